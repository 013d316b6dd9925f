"""The learning-rate range test (Smith 2018) through Lightning's tuner."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.config import Config
from saltseg.errors import SaltsegError


def find_lr(
    config: Config,
    out: str | Path,
    data: str | Path | None = None,
    fold: int = 0,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
) -> dict[str, Any]:
    """Run the range test on the training tiles of one fold; write the plot to ``out``.

    The learning rate grows exponentially from ``min_lr`` to ``max_lr`` over ``steps`` batches
    (stopping early when the loss diverges); the suggestion is the point of steepest descent of
    the smoothed loss.

    Returns:
        ``{"suggestion": float, "lr": [...], "loss": [...]}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from lightning.pytorch.tuner import Tuner

    from saltseg.data.datamodule import FoldDataModule
    from saltseg.data.folds import make_folds
    from saltseg.data.tgs import load_dataset
    from saltseg.training.fold import make_trainer
    from saltseg.training.kfold import check_run_inputs
    from saltseg.training.module import SaltModule

    if not 0 < min_lr < max_lr:
        raise SaltsegError(f"need 0 < min_lr < max_lr, got {min_lr} and {max_lr}")
    root = check_run_inputs(config, Path(data) if data else None, [fold])
    tiles = load_dataset(root, "train")
    frame = make_folds(tiles.ids, tiles.masks, k=config.data.k, seed=config.data.fold_seed)
    datamodule = FoldDataModule(
        tiles,
        np.flatnonzero(frame["fold"].to_numpy() == fold),
        config.augment,
        batch_size=config.data.batch_size,
        num_workers=config.data.num_workers,
        extra_channels=config.data.extra_channels,
        seed=config.trainer.seed,
    )
    module = SaltModule(config)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(
            config.model_copy(update={"trainer": config.trainer.model_copy(update={"epochs": 1})}),
            Path(tmp),
            progress=False,
        )
        finder = Tuner(trainer).lr_find(
            module,
            datamodule=datamodule,
            min_lr=min_lr,
            max_lr=max_lr,
            num_training=steps,
            update_attr=False,
        )
    if finder is None or not finder.results.get("lr"):
        raise SaltsegError("the LR range test produced no results")
    suggestion = finder.suggestion()
    if suggestion is None:
        raise SaltsegError("the LR range test found no descending stretch: widen the range")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = finder.plot(suggest=True)
    figure.axes[0].set_title(f"LR range test: suggested {suggestion:.3g}")
    figure.savefig(out, dpi=100)
    return {
        "suggestion": float(suggestion),
        "lr": [float(v) for v in finder.results["lr"]],
        "loss": [float(v) for v in finder.results["loss"]],
    }
