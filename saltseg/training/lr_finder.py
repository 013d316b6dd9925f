"""The learning-rate range test (Smith 2018) through Lightning's tuner."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.config import Config
from saltseg.data.datamodule import FoldDataModule
from saltseg.data.tgs import load_dataset
from saltseg.errors import SaltsegError
from saltseg.io import atomic_path, check_output_file
from saltseg.training.fold import make_trainer
from saltseg.training.kfold import check_run_inputs, load_pseudo, split_folds
from saltseg.training.module import SaltModule


def steepest_descent(lrs: list[float], losses: list[float], skip: float = 0.1) -> float:
    """The learning rate where the loss falls fastest against log(lr).

    The first and last ``skip`` fraction of the points (warm-up noise, divergence) are left out
    when at least three points remain.
    """
    lr, loss = np.asarray(lrs, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    keep = np.isfinite(loss) & (lr > 0)
    lr, loss = lr[keep], loss[keep]
    if len(lr) < 3:
        raise SaltsegError("the LR range test has fewer than three finite losses")
    cut = int(len(lr) * skip)
    if len(lr) - 2 * cut >= 3:
        lr, loss = lr[cut : len(lr) - cut], loss[cut : len(loss) - cut]
    slope = np.gradient(loss, np.log(lr))
    return float(lr[int(np.argmin(slope))])


def find_lr(
    config: Config,
    out: str | Path,
    data: str | Path | None = None,
    fold: int = 0,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
    stop_factor: float | None = 4.0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the range test on the training tiles of one fold; write the plot to ``out``.

    The learning rate grows exponentially from ``min_lr`` to ``max_lr`` over ``steps`` batches
    (stopping early once the smoothed loss exceeds ``stop_factor`` times its best value; None
    runs the whole range); the suggestion is the point of steepest descent of
    the smoothed loss.

    ``out`` must not exist unless ``overwrite`` is set.

    Returns:
        ``{"suggestion": float, "lr": [...], "loss": [...]}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from lightning.pytorch.tuner import Tuner

    if not 0 < min_lr < max_lr:
        raise SaltsegError(f"need 0 < min_lr < max_lr, got {min_lr} and {max_lr}")
    out = check_output_file(out, overwrite)
    root = check_run_inputs(config, Path(data) if data else None, [fold])
    tiles = load_dataset(root, "train")
    pseudo = load_pseudo(config, tiles)
    frame = split_folds(config, tiles)  # the split that training uses
    val_index = np.flatnonzero(frame["fold"].to_numpy() == fold)
    datamodule = FoldDataModule.from_config(tiles, val_index, config, config.trainer.seed, pseudo)
    module = SaltModule(config)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(
            config.model_copy(
                update={"trainer": config.trainer.model_copy(update={"epochs": steps})}
            ),
            Path(tmp),
            progress=False,
        )
        finder = Tuner(trainer).lr_find(
            module,
            datamodule=datamodule,
            min_lr=min_lr,
            max_lr=max_lr,
            num_training=steps,
            early_stop_threshold=stop_factor,
            update_attr=False,
        )
    if finder is None or len(finder.results.get("lr", [])) < 3:
        raise SaltsegError("the LR range test stopped before three steps: widen the range")
    suggestion = steepest_descent(finder.results["lr"], finder.results["loss"])
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = finder.plot(suggest=False)
    axes = figure.axes[0]
    axes.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.3g}")
    axes.legend()
    axes.set_title("LR range test (smoothed loss)")
    with atomic_path(out) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    return {
        "suggestion": float(suggestion),
        "lr": [float(v) for v in finder.results["lr"]],
        "loss": [float(v) for v in finder.results["loss"]],
    }
