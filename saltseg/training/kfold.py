"""k-fold cross-validation: one Lightning run per fold, out-of-fold predictions, the OOF score.

A run folder holds::

    config.yaml          the resolved recipe
    folds.csv            the split (id, fold, coverage_class)
    fold_K/best.ckpt     best epoch by the validation competition metric (self-describing)
    fold_K/last.ckpt     the last finished epoch, for --resume
    fold_K/metrics.csv   per-epoch losses and validation metrics
    fold_K/oof.npz       ids and probabilities (float16) of the fold's validation tiles
    fold_K/score.json    best epoch and OOF score of the fold
    oof_score.json       the OOF competition score of the whole run

Every file is written to a temporary name and renamed into place, so a killed run never leaves a
truncated file behind; ``resume=True`` skips finished folds and continues the others from
``last.ckpt``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saltseg.config import Config, load_config, save_config
from saltseg.data.folds import make_folds, read_folds, write_folds
from saltseg.data.tgs import TileSet, load_dataset
from saltseg.errors import SaltsegError
from saltseg.metrics import competition_metric

log = logging.getLogger(__name__)


def write_json(data: dict[str, Any], path: Path) -> None:
    """Write JSON atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def save_oof(path: Path, ids: list[str], probs: dict[str, np.ndarray]) -> None:
    """Write a fold's out-of-fold probabilities atomically (masks as float16)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    arrays = {"ids": np.array(ids), "mask": probs["mask"].astype(np.float16)}
    if "cls" in probs:
        arrays["cls"] = probs["cls"].astype(np.float32)
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_oof(run: str | Path) -> dict[str, Any]:
    """All out-of-fold probabilities of a run, sorted by id, with each tile's fold."""
    run = Path(run)
    files = sorted(run.glob("fold_*/oof.npz"))
    if not files:
        raise SaltsegError(f"{run}: no out-of-fold predictions (fold_*/oof.npz)")
    ids, masks, classes, folds = [], [], [], []
    for file in files:
        with np.load(file) as data:
            ids += [str(i) for i in data["ids"]]
            masks.append(data["mask"].astype(np.float32))
            if "cls" in data:
                classes.append(data["cls"])
            folds += [int(file.parent.name.split("_")[1])] * len(data["ids"])
    order = np.argsort(ids)
    result = {
        "ids": [ids[i] for i in order],
        "mask": np.concatenate(masks)[order],
        "fold": np.array(folds)[order],
    }
    if len(classes) == len(files):
        result["cls"] = np.concatenate(classes)[order]
    return result


def _is_rank_zero() -> bool:
    """Whether this process is rank 0 of its launch (always true outside distributed runs)."""
    names = ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")
    return all(int(os.environ.get(name, "0")) == 0 for name in names)


def _check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    if (out / "config.yaml").exists():
        if not (resume or overwrite):
            raise SaltsegError(
                f"run folder {out} already holds a run: use --resume to continue it "
                "or --overwrite to start again"
            )
    elif resume:
        raise SaltsegError(f"nothing to resume: {out} holds no run")


def split_folds(
    config: Config, tiles: TileSet, out: Path | None = None, resume: bool = False
) -> pd.DataFrame:
    """The folds of a run: its own folds.csv on resume, else the configured file, else new ones."""
    if resume and out is not None and (out / "folds.csv").exists():
        return read_folds(out / "folds.csv", ids=tiles.ids, k=config.data.k)
    if config.data.folds_file is not None:
        frame = read_folds(config.data.folds_file, ids=tiles.ids, k=config.data.k)
        return frame.set_index("id").loc[tiles.ids].reset_index()
    return make_folds(
        tiles.ids,
        tiles.masks,
        k=config.data.k,
        seed=config.data.fold_seed,
        depths=tiles.depths,
        depth_bins=config.data.depth_bins,
    )


def check_run_inputs(config: Config, data: Path | None, folds: list[int] | None) -> Path:
    """Everything that can be checked before training: data folder, fold indices, the model."""
    root = data or config.data.root
    if root is None:
        raise SaltsegError("no data folder: pass --data or set data.root in the config")
    chosen = folds if folds is not None else config.folds
    for fold in chosen or []:
        if not 0 <= fold < config.data.k:
            raise SaltsegError(f"fold {fold} out of range: the run has k={config.data.k} folds")
    from saltseg.models import create_model

    try:
        create_model(config.model_kwargs(pretrained=False))
    except TypeError as err:
        raise SaltsegError(f"bad model config: {err}") from None
    return Path(root)


def train_kfold(
    config: Config,
    out: str | Path,
    data: str | Path | None = None,
    folds: list[int] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the chosen folds of a recipe and score the out-of-fold predictions.

    Args:
        config: The recipe.
        out: The run folder.
        data: Kaggle-layout data folder (else ``config.data.root``).
        folds: Fold indices to train (else ``config.folds``, else all).
        resume: Continue the run in ``out``: finished folds are skipped, the others restart
            from their ``last.ckpt``.
        overwrite: Delete an existing run in ``out`` first.
        progress: Show progress bars.

    Returns:
        The OOF summary written to ``oof_score.json``.
    """
    from saltseg.training.fold import train_fold

    out = Path(out)
    # Under DDP every rank runs this function; only rank 0 touches the run folder. The others
    # compute the same (deterministic) split and wait for rank 0 inside Lightning.
    is_zero = _is_rank_zero()
    if is_zero:
        _check_run_folder(out, resume, overwrite)
    if resume:
        config = load_config(out / "config.yaml")
    root = check_run_inputs(config, Path(data) if data else None, folds).resolve()
    config = config.model_copy(update={"data": config.data.model_copy(update={"root": root})})
    tiles = load_dataset(root, "train")
    frame = split_folds(config, tiles, out, resume)
    if is_zero:
        if overwrite and not resume and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            save_config(config, out / "config.yaml")
        write_folds(frame, out / "folds.csv")
    chosen = folds if folds is not None else (config.folds or list(range(config.data.k)))
    fold_of = frame.set_index("id").loc[tiles.ids, "fold"].to_numpy()
    scores = {}
    for fold in chosen:
        fold_dir = out / f"fold_{fold}"
        if resume and (fold_dir / "score.json").exists():
            scores[fold] = json.loads((fold_dir / "score.json").read_text())
            log.info("fold %d already finished, skipped", fold)
            continue
        val_index = np.flatnonzero(fold_of == fold)
        result = train_fold(config, tiles, val_index, fold, fold_dir, resume, progress)
        if result is not None:
            scores[fold] = result
    if not scores:  # a non-zero rank of a multi-process run
        return {}
    return summarise_run(out, tiles, config.trainer.threshold)


def summarise_run(out: Path, tiles: TileSet, threshold: float) -> dict[str, Any]:
    """Score all out-of-fold predictions of a run and write ``oof_score.json``."""
    oof = load_oof(out)
    index = {tile_id: i for i, tile_id in enumerate(tiles.ids)}
    truth = tiles.masks[[index[i] for i in oof["ids"]]]
    per_fold = {}
    for fold in np.unique(oof["fold"]):
        sel = oof["fold"] == fold
        per_fold[int(fold)] = competition_metric(truth[sel], oof["mask"][sel] > threshold)
    summary = {
        "oof_score": competition_metric(truth, oof["mask"] > threshold),
        "threshold": threshold,
        "n_tiles": len(oof["ids"]),
        "per_fold": per_fold,
    }
    write_json(summary, out / "oof_score.json")
    return summary
