"""Self-supervised pretraining of a recipe's U-Net on unlabelled seismic tiles.

::

    from saltseg.pretrain import pretrain

    pretrain("configs/resnet34-cpu.yaml", ["data/tgs"], "simclr", epochs=8, out="simclr.pt")
    # then train with model.pretrained=simclr.pt
"""

from saltseg.pretrain.data import ImageSet, load_images
from saltseg.pretrain.methods import METHODS, PretrainMethod, create_method, list_methods
from saltseg.pretrain.train import (
    build_method,
    check_pretrain_output,
    pretrain,
    pretrain_images,
    save_pretrain,
)

__all__ = [
    "METHODS",
    "ImageSet",
    "PretrainMethod",
    "build_method",
    "check_pretrain_output",
    "create_method",
    "list_methods",
    "load_images",
    "pretrain",
    "pretrain_images",
    "save_pretrain",
]
