"""One fold: a Lightning Trainer from the recipe, then the fold's out-of-fold predictions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from saltseg.config import Config
from saltseg.data.datamodule import FoldDataModule
from saltseg.data.tgs import TileSet
from saltseg.io import atomic_path
from saltseg.metrics import competition_metric
from saltseg.quiet import quiet_lightning
from saltseg.runs import Run
from saltseg.training.checkpoint import AtomicCheckpointIO, drop_training_state
from saltseg.training.module import SaltModule
from saltseg.training.precision import resolve_precision
from saltseg.tta import DEFAULT_TTA, predict_probs


class EpochTimer(L.Callback):
    """Logs ``epoch_seconds``: the wall time of each epoch, training and validation together
    (checkpoint writing included)."""

    def __init__(self) -> None:
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        module.log("epoch_seconds", time.perf_counter() - self._start, sync_dist=False)


def _loggers(fold_dir: Path) -> list[Any]:
    logs = fold_dir / "logs"
    attempt = len(list(logs.glob("attempt_*")))  # one per start or resume
    loggers: list[Any] = [CSVLogger(fold_dir, name=logs.name, version=f"attempt_{attempt}")]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(fold_dir, name="tensorboard", version=""))
    except ImportError:
        pass
    return loggers


def _merge_metrics(run: Run, fold: int) -> None:
    """Join the CSV logs of every attempt into ``metrics.csv``; a resumed epoch replaces the old."""
    frames = []
    for path in sorted(
        run.logs_dir(fold).glob("attempt_*/metrics.csv"),
        key=lambda p: int(p.parent.name.split("_")[1]),
    ):
        frame = pd.read_csv(path)
        if frames and "epoch" in frame and len(frame):
            frames = [f[f["epoch"] < frame["epoch"].min()] for f in frames]
        frames.append(frame)
    if frames:
        with atomic_path(run.metrics_path(fold)) as tmp:
            pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)


def make_trainer(
    config: Config,
    fold_dir: Path,
    progress: bool = True,
    callbacks_extra: list[L.Callback] | None = None,
) -> L.Trainer:
    """A Trainer from the recipe's ``trainer`` section, checkpointing into ``fold_dir``."""
    t = config.trainer
    # The kept epoch's weights (and recipe) are all inference needs; --resume reads last.ckpt.
    # With keep="last", best.ckpt follows the latest epoch (no monitor).
    best = ModelCheckpoint(
        dirpath=fold_dir,
        filename="best",
        monitor="val_metric" if t.keep == "best" else None,
        mode="max",
        save_top_k=1,
        save_weights_only=True,
        enable_version_counter=False,
    )
    # Lightning's save_last only follows saves of the best; this one is written every epoch.
    last = ModelCheckpoint(
        dirpath=fold_dir, filename="last", save_top_k=1, enable_version_counter=False
    )
    quiet_lightning()
    return L.Trainer(
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=resolve_precision(t.precision, t.accelerator),
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        gradient_clip_val=t.gradient_clip_val,
        log_every_n_steps=t.log_every_n_steps,
        callbacks=[best, last, EpochTimer(), *(callbacks_extra or [])],
        logger=_loggers(fold_dir),
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=fold_dir,
    )


def train_fold(
    config: Config,
    tiles: TileSet,
    val_index: np.ndarray,
    fold: int,
    run: Run,
    resume: bool = False,
    progress: bool = True,
    extra_train: TileSet | None = None,
) -> dict[str, Any] | None:
    """Train one fold and write its artefacts; returns its score (None on non-zero ranks).

    Out-of-fold predictions use predict's default views (:data:`~saltseg.tta.DEFAULT_TTA`), so
    post-processing is tuned on probabilities like those it is applied to. ``extra_train``
    (pseudo-labelled tiles) joins the training tiles only.
    """
    fold_dir = run.fold_dir(fold)
    fold_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(config.trainer.seed + fold, workers=True, verbose=False)
    datamodule = FoldDataModule.from_config(
        tiles, val_index, config, config.trainer.seed + fold, extra_train
    )
    trainer = make_trainer(config, fold_dir, progress)
    last = run.checkpoint_path(fold, "last")
    ckpt_path = str(last) if resume and last.exists() else None
    trainer.fit(SaltModule(config), datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if not trainer.is_global_zero:
        return None

    model, _, meta = run.load_model(fold)
    val = datamodule.val_tiles
    probs = predict_probs(
        model, config, val.images, val.depths, tta=DEFAULT_TTA, batch_size=config.data.batch_size
    )
    run.save_oof(fold, val.ids, probs)
    _merge_metrics(run, fold)
    score = {
        "fold": fold,
        "best_epoch": meta["epoch"],
        "n_val": len(val),
        "oof_score": competition_metric(val.masks, probs["mask"] > config.trainer.threshold),
    }
    run.save_fold_score(fold, score)  # the fold is finished: --resume skips it from now on
    drop_training_state(last)
    return score
