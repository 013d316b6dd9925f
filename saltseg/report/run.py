"""Read what the report needs from a run folder and the data folder it was trained on.

Everything is read through :class:`saltseg.runs.Run`. The out-of-fold probabilities are matched
to the labelled tiles by id; the tuned post-processing (``saltseg tune``) is applied when present,
else plain thresholding at the run's threshold. Training curves come from each fold's metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saltseg.data.tgs import load_dataset
from saltseg.errors import SaltsegError
from saltseg.models.pretrained import describe_init, init_text
from saltseg.runs import Run, oof_rows

CURVE_COLUMNS = ("train_loss", "val_loss", "val_metric", "val_iou")


@dataclass
class RunInputs:
    """Arrays and files of one run, aligned by tile.

    Attributes:
        run: The run folder.
        data: The data folder.
        name: The recipe name (from config.yaml), or the folder name.
        model: A short model description, e.g. ``unet / resnet34``.
        ids: Tile ids, sorted.
        images: float32 ``(N, H, W)`` tiles.
        truth: bool ``(N, H, W)`` masks.
        probs: float32 ``(N, H, W)`` out-of-fold salt probabilities.
        pred: bool ``(N, H, W)`` masks after the post-processing.
        folds: ``(N,)`` fold of each tile.
        depths: ``(N,)`` depths (NaN when unknown).
        cls: ``(N,)`` classifier salt probabilities, or None.
        threshold: The run's plain pixel threshold.
        postprocess: The tuned settings (a ``PostProcess``), or None.
        curves: Per-epoch training metrics of each fold.
        fold_info: Contents of each ``fold_K/score.json``.
        ancestry: Lines on where the run comes from (:func:`ancestry`).
    """

    run: Path
    data: Path
    name: str
    model: str
    ids: list[str]
    images: np.ndarray
    truth: np.ndarray
    probs: np.ndarray
    pred: np.ndarray
    folds: np.ndarray
    depths: np.ndarray
    cls: np.ndarray | None
    threshold: float
    postprocess: Any | None
    curves: dict[int, pd.DataFrame] = field(default_factory=dict)
    fold_info: dict[int, dict[str, Any]] = field(default_factory=dict)
    ancestry: list[str] = field(default_factory=list)


def ancestry(run: Run) -> list[str]:
    """Where a run comes from: its initial weights (random, timm ImageNet, a saltseg-pretrain
    file with its method, data and epochs) and, for a self-trained run, its source run, round
    and pseudo-labels. Read from ``run.json``, else (older runs) from the config."""
    info = run.info()
    init = info.get("init") or describe_init(run.config().model.model_dump().get("pretrained"))
    lines = [f"Initial weights: {init_text(init)}"]
    selftrain = info.get("self_training")
    if selftrain:
        lines.append(
            f"Self-training round {selftrain.get('round')} from run {selftrain.get('source_run')}"
            f": {selftrain.get('pseudo_tiles')} pseudo-labelled tiles of "
            f"{selftrain.get('unlabelled_tiles')} unlabelled, predicted by "
            f"{selftrain.get('previous_run')}"
        )
    elif info.get("pseudo_tiles"):
        lines.append(f"Trained with {info['pseudo_tiles']} pseudo-labelled tiles (data.pseudo)")
    return lines


def read_curves(run: str | Path) -> dict[int, pd.DataFrame]:
    """Per-epoch metrics of each fold: one row per epoch, columns from :data:`CURVE_COLUMNS`.

    Step-wise training losses are averaged over the epoch.
    """
    curves = {}
    owner = Run(run)
    for fold in owner.folds():
        path = owner.metrics_path(fold)
        if not path.exists():
            continue
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise SaltsegError(f"{path}: unreadable metrics ({str(err).splitlines()[0]})") from None
        if "epoch" not in frame.columns:
            raise SaltsegError(f"{path}: no 'epoch' column")
        columns = [c for c in CURVE_COLUMNS if c in frame.columns]
        curves[fold] = frame.groupby("epoch")[columns].mean().reset_index()
    return curves


def load_inputs(run: str | Path, data: str | Path | None) -> RunInputs:
    """Load a run's out-of-fold predictions with the matching tiles, masks and files.

    Args:
        run: A run folder written by ``saltseg train``.
        data: The Kaggle-layout data folder the run was trained on; None for the ``data.root``
            saved in the run's config.yaml.

    Raises:
        SaltsegError: The run folder does not exist or has no out-of-fold predictions, or some
            of its tile ids are not in the data folder.
    """
    owner = Run.open(run)
    run = owner.root
    oof = owner.oof()
    config = owner.config()
    if data is None and config.data.root is None:
        raise SaltsegError(f"{owner.config_path} names no data folder (data.root): pass the data")
    data = Path(data) if data is not None else Path(config.data.root)
    tiles = load_dataset(data, "train")
    tiles = tiles.subset(oof_rows(oof["ids"], tiles, data))
    threshold = config.trainer.threshold
    pp = owner.postprocess()
    cls = oof.get("cls")
    probs = oof["mask"]
    if pp is not None:
        if pp.cls_threshold and cls is None:
            raise SaltsegError(
                f"{owner.postprocess_path} gates on a classifier, but the run has no classifier "
                "output"
            )
        pred = pp.apply(probs, tiles.images, cls)
    else:
        pred = probs > threshold
    fold_info = {}
    for fold in owner.folds():
        summary = owner.fold_summary(fold)
        if summary is not None:
            fold_info[fold] = summary
    model = config.model.model_dump()
    return RunInputs(
        run=run,
        data=data,
        name=config.name or run.name,
        model=" / ".join(str(model[key]) for key in ("name", "encoder") if model.get(key)),
        ids=tiles.ids,
        images=tiles.images,
        truth=tiles.masks,
        probs=probs,
        pred=pred,
        folds=oof["fold"],
        depths=tiles.depths,
        cls=cls,
        threshold=threshold,
        postprocess=pp,
        curves=read_curves(run),
        fold_info=fold_info,
        ancestry=ancestry(owner),
    )
