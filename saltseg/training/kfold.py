"""k-fold cross-validation: one Lightning run per fold, out-of-fold predictions, the OOF score,
then post-processing tuned on the out-of-fold predictions (the run is ready to predict).

The run folder is owned by :class:`saltseg.runs.Run`, which knows its layout. Every setting is
checked (config, data, folds, model, losses, trainer) before the first write; ``resume=True``
skips finished folds and continues the others from ``last.ckpt``. Pseudo-labelled tiles
(``data.pseudo``) join the training tiles of every fold and never a validation fold.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd

from saltseg.checkpoints import read_checkpoint
from saltseg.config import Config
from saltseg.data.folds import make_folds, read_folds
from saltseg.data.tgs import TileSet, concat_tiles, load_dataset
from saltseg.errors import SaltsegError
from saltseg.metrics import competition_metric
from saltseg.models import create_model
from saltseg.models.pretrained import describe_init
from saltseg.postprocess import PostProcess
from saltseg.quiet import quiet_lightning
from saltseg.runs import Run, oof_rows, tune_oof
from saltseg.training.fold import train_fold
from saltseg.training.module import build_criterion
from saltseg.training.precision import resolve_precision

log = logging.getLogger(__name__)

# Settings that may change when a run is resumed (the hardware it runs on); the rest must match.
RESUMABLE = {
    ("trainer", "devices"),
    ("trainer", "num_nodes"),
    ("trainer", "strategy"),
    ("trainer", "accelerator"),
    ("trainer", "precision"),
    ("trainer", "channels_last"),
    ("data", "num_workers"),
    ("data", "root"),
}


def _is_rank_zero() -> bool:
    """Whether this process is rank 0 of its launch (always true outside distributed runs)."""
    names = ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")
    return all(int(os.environ.get(name, "0")) == 0 for name in names)


def resume_config(saved: Config, given: Config | None) -> Config:
    """The config of a resumed run: its own, with the hardware settings of ``given``.

    Raises:
        SaltsegError: ``given`` differs from the saved config in anything but :data:`RESUMABLE`.
    """
    if given is None:
        return saved
    old, new = saved.model_dump(mode="json"), given.model_dump(mode="json")
    for section in new:
        values = new[section] if isinstance(new[section], dict) else {None: new[section]}
        for key, value in values.items():
            before = old[section] if key is None else old[section].get(key)
            if (section, key) not in RESUMABLE and value != before:
                name = section if key is None else f"{section}.{key}"
                raise SaltsegError(
                    f"--resume continues a run with its own config, but {name} differs "
                    f"(run: {before!r}, given: {value!r}): drop --config/--set, or start "
                    "again with --overwrite"
                )
    updates = {}
    for section, key in RESUMABLE:
        value = getattr(getattr(given, section), key)
        if value is not None:
            updates.setdefault(section, getattr(saved, section).model_dump())[key] = value
    return type(saved).model_validate({**saved.model_dump(), **updates})


def split_folds(
    config: Config, tiles: TileSet, run: Run | None = None, resume: bool = False
) -> pd.DataFrame:
    """The folds of a run: its own folds.csv on resume, else the configured file, else new ones."""
    if resume and run is not None and run.folds_path.exists():
        return run.folds_frame(ids=tiles.ids, k=config.data.k)
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


def check_trainer(config: Config) -> None:
    """Build (and drop) a Trainer from the recipe, so bad devices or precision fail early."""
    t = config.trainer
    try:
        quiet_lightning()
        L.Trainer(
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            precision=resolve_precision(t.precision, t.accelerator),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except Exception as err:  # noqa: BLE001 - Lightning raises several kinds here
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SaltsegError(f"bad trainer settings: {text}") from None


def absolute_paths(config: Config) -> Config:
    """The config with its weights file (``model.pretrained``) and pseudo-label folders
    (``data.pseudo``) made absolute, so the run's config.yaml holds paths that work anywhere."""
    pretrained = config.model.model_dump().get("pretrained")
    update: dict[str, Any] = {
        "data": config.data.model_copy(
            update={"pseudo": [Path(p).resolve() for p in config.data.pseudo]}
        )
    }
    if isinstance(pretrained, str):
        resolved = str(Path(pretrained).resolve())
        update["model"] = config.model.model_copy(update={"pretrained": resolved})
    return config.model_copy(update=update)


def load_pseudo(config: Config, tiles: TileSet) -> TileSet | None:
    """The pseudo-labelled tiles of ``data.pseudo`` (None when there are none).

    Raises:
        SaltsegError: an unreadable folder, or a tile that is also among the labelled tiles.
    """
    if not config.data.pseudo:
        return None
    pseudo = concat_tiles([load_dataset(folder, "train") for folder in config.data.pseudo])
    labelled = set(tiles.ids)
    clash = [i for i in pseudo.ids if i in labelled]
    if clash:
        raise SaltsegError(
            f"pseudo-labelled tile {clash[0]!r} is also a labelled tile ({len(clash)} such "
            "tiles): pseudo-label tiles that have no label"
        )
    return pseudo


def check_run_inputs(config: Config, data: Path | None, folds: list[int] | None) -> Path:
    """Everything that can be checked before training: data folder, fold indices, the model,
    the losses and the trainer settings."""
    root = data or config.data.root
    if root is None:
        raise SaltsegError("no data folder: pass --data or set data.root in the config")
    chosen = folds if folds is not None else config.folds
    for fold in chosen or []:
        if not 0 <= fold < config.data.k:
            raise SaltsegError(f"fold {fold} out of range: the run has k={config.data.k} folds")
    weights_file = isinstance(config.model.model_dump().get("pretrained"), str)
    try:  # a weights file is read now (ImageNet weights are not fetched to check a recipe)
        create_model(config.model_kwargs(pretrained=weights_file))
    except (TypeError, ValueError) as err:
        raise SaltsegError(f"bad model config: {str(err).splitlines()[0]}") from None
    try:
        build_criterion(config.loss, config.loss_window())
    except (TypeError, ValueError, KeyError) as err:
        raise SaltsegError(f"bad loss config: {str(err).splitlines()[0]}") from None
    check_trainer(config)
    return Path(root)


def train_kfold(
    config: Config | None,
    out: str | Path,
    data: str | Path | None = None,
    folds: list[int] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the chosen folds of a recipe, score the out-of-fold predictions and tune on them.

    Args:
        config: The recipe (None on resume: the run's own config).
        out: The run folder.
        data: Kaggle-layout data folder (else ``config.data.root``).
        folds: Fold indices to train (else ``config.folds``, else all).
        resume: Continue the run in ``out``: finished folds are skipped, the others restart
            from their ``last.ckpt``. A given ``config`` may differ from the run's only in the
            hardware settings (:data:`RESUMABLE`).
        overwrite: Replace a saltseg run in ``out`` once every setting has been checked: its own
            files are set aside in ``out/.replaced`` and deleted when training has finished.
        progress: Show progress bars.
        info: Extra facts recorded in the run's ``run.json`` (besides ``init``, where the
            initial weights come from, and ``pseudo_tiles``, the number of pseudo-labelled
            tiles of ``data.pseudo``).

    Returns:
        The OOF summary written to ``oof_score.json``, plus ``tuned``: the OOF score with the
        post-processing tuned on the out-of-fold predictions and saved to ``postprocess.json``
        (its description, the folds it was tuned on, whether those are all the folds, the
        file; see :func:`tune_run`).
    """
    run = Run(out)
    # Under DDP every rank runs this function; only rank 0 touches the run folder. The others
    # compute the same (deterministic) split and wait for rank 0 inside Lightning.
    is_zero = _is_rank_zero()
    if is_zero:
        run.check_new(resume, overwrite)
    if config is not None:
        config = absolute_paths(config)
    if resume:
        config = resume_config(run.config(), config)
    elif config is None:
        raise SaltsegError("no config given: pass --config (only --resume reads the run's own)")
    root = check_run_inputs(config, Path(data) if data else None, folds).resolve()
    if is_zero:
        for note in config.idle_schedule():
            log.warning("%s", note)
    config = config.model_copy(update={"data": config.data.model_copy(update={"root": root})})
    tiles = load_dataset(root, "train")
    pseudo = load_pseudo(config, tiles)
    frame = split_folds(config, tiles, run, resume)
    chosen = folds if folds is not None else (config.folds or list(range(config.data.k)))
    if resume:
        for fold in chosen:
            last = run.checkpoint_path(fold, "last")
            if run.fold_summary(fold) is None and last.exists():
                read_checkpoint(last)  # a truncated or foreign file fails here, not mid-fit
    info = {"init": describe_init(config.model.model_dump().get("pretrained")), **(info or {})}
    if pseudo is not None:
        info["pseudo_tiles"] = len(pseudo)
    if is_zero:
        run.initialise(config, frame, resume, overwrite, info)
    fold_of = frame.set_index("id").loc[tiles.ids, "fold"].to_numpy()
    scores = {}
    for fold in chosen:
        if resume and (summary := run.fold_summary(fold)) is not None:
            scores[fold] = summary
            log.info("fold %d already finished, skipped", fold)
            continue
        val_index = np.flatnonzero(fold_of == fold)
        result = train_fold(config, tiles, val_index, fold, run, resume, progress, pseudo)
        if result is not None:
            scores[fold] = result
    if not scores:  # a non-zero rank of a multi-process run
        return {}
    oof = run.oof()
    summary = summarise_run(run, tiles, config.trainer.threshold, oof)
    pp = tune_run(run, tiles, config, oof)
    summary["tuned"] = {
        "oof_score": pp.info["oof_score_after"],
        "postprocess": pp.describe(),
        "folds": pp.info["folds"],
        "complete": pp.info["complete"],
        "file": str(run.postprocess_path),
    }
    run.drop_replaced()  # the command has finished: the run it replaced can go
    return summary


def summarise_run(
    run: Run, tiles: TileSet, threshold: float, oof: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Score all out-of-fold predictions of a run and write ``oof_score.json``.

    Args:
        run: The run.
        tiles: Its training tiles.
        threshold: The pixel threshold.
        oof: The run's out-of-fold predictions (read from the run when None).
    """
    oof = run.oof() if oof is None else oof
    truth = tiles.masks[oof_rows(oof["ids"], tiles)]
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
    run.save_oof_summary(summary)
    return summary


def tune_run(
    run: Run, tiles: TileSet, config: Config, oof: dict[str, Any] | None = None
) -> PostProcess:
    """Tune post-processing on the run's out-of-fold predictions and save ``postprocess.json``.

    The run is then ready to predict, as after ``saltseg tune``. With some folds not trained
    yet, the settings are tuned on the folds there are and ``info["complete"]`` is false;
    training the other folds later (``--resume --folds``) tunes again on all of them.

    Args:
        run: The run.
        tiles: Its training tiles.
        config: Its recipe.
        oof: The run's out-of-fold predictions (read from the run when None).

    Returns:
        The settings, with ``info`` as :func:`saltseg.runs.tune_oof` and ``saltseg tune`` write.
    """
    pp = tune_oof(run.oof() if oof is None else oof, tiles, config)
    pp.info.update(runs=[str(run.root)], weights=[1.0])
    run.save_postprocess(pp)
    return pp
