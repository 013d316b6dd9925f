"""saltseg: salt body segmentation in seismic images.

The public API is imported lazily, so ``import saltseg`` stays light::

    import saltseg

    tiles = saltseg.load_dataset("data/tgs", "train")
    model = saltseg.create_model("resnet34")
    saltseg.score(tiles.masks, predicted_masks)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_dataset": "saltseg.data.tgs",
    "TileSet": "saltseg.data.tgs",
    "make_folds": "saltseg.data.folds",
    "create_model": "saltseg.models",
    "list_models": "saltseg.models",
    "create_loss": "saltseg.losses",
    "list_losses": "saltseg.losses",
    "score": ("saltseg.metrics", "competition_metric"),
    "competition_metric": "saltseg.metrics",
    "image_scores": "saltseg.metrics",
    "iou": "saltseg.metrics",
    "rle_encode": "saltseg.rle",
    "rle_decode": "saltseg.rle",
    "load_config": "saltseg.config",
    "train_kfold": "saltseg.training.kfold",
    "load_model": "saltseg.checkpoints",
    "Run": "saltseg.runs",
    "predict_probs": "saltseg.tta",
    "predict_folder": "saltseg.inference.pipeline",
    "tune_runs": "saltseg.inference.pipeline",
    "Ensemble": "saltseg.inference.ensemble",
    "PostProcess": "saltseg.postprocess",
    "run_mosaic": "saltseg.mosaic",
    "mosaic_groups": "saltseg.mosaic",
    "generate_dataset": "saltseg.data.synthetic",
    "pretrain": "saltseg.pretrain",
    "self_train": "saltseg.selftrain",
    "analyse": "saltseg.report",
    "write_report": "saltseg.report",
    "SaltsegError": "saltseg.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'saltseg' has no attribute {name!r}")
    module_name, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
