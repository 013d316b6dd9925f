"""Read what the report needs from a run folder and the data folder it was trained on.

The out-of-fold probabilities are matched to the labelled tiles by id; the post-processing of
``postprocess.json`` (written by ``saltseg tune``) is applied when present, else plain
thresholding at the run's threshold. Training curves come from each ``fold_K/metrics.csv``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from saltseg.data.tgs import load_dataset
from saltseg.errors import SaltsegError
from saltseg.training.kfold import load_oof

DEFAULT_THRESHOLD = 0.5
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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SaltsegError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(data, dict):
        raise SaltsegError(f"{path}: expected a JSON object")
    return data


def _read_config(run: Path) -> dict[str, Any]:
    """The run's saved recipe as a plain tree ({} without config.yaml)."""
    path = run / "config.yaml"
    if not path.exists():
        return {}
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise SaltsegError(f"{path}: invalid YAML") from None
    if not isinstance(tree, dict):
        raise SaltsegError(f"{path}: a config must be a mapping of sections")
    return tree


def _data_root(run: Path, tree: dict[str, Any]) -> Path:
    root = (tree.get("data") or {}).get("root")
    if not root:
        raise SaltsegError(f"{run}/config.yaml names no data folder (data.root): pass the data")
    return Path(root)


def read_curves(run: str | Path) -> dict[int, pd.DataFrame]:
    """Per-epoch metrics of each fold: one row per epoch, columns from :data:`CURVE_COLUMNS`.

    Step-wise training losses are averaged over the epoch.
    """
    curves = {}
    for path in sorted(Path(run).glob("fold_*/metrics.csv")):
        fold = int(path.parent.name.split("_")[1])
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise SaltsegError(f"{path}: unreadable metrics ({str(err).splitlines()[0]})") from None
        if "epoch" not in frame.columns:
            raise SaltsegError(f"{path}: no 'epoch' column")
        columns = [c for c in CURVE_COLUMNS if c in frame.columns]
        curves[fold] = frame.groupby("epoch")[columns].mean().reset_index()
    return curves


def _postprocess(run: Path) -> Any | None:
    path = run / "postprocess.json"
    if not path.exists():
        return None
    from saltseg.inference.postprocess import load_postprocess

    return load_postprocess(path)


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
    run = Path(run)
    if not run.is_dir():
        raise SaltsegError(f"run folder {run} does not exist")
    oof = load_oof(run)
    tree = _read_config(run)
    data = _data_root(run, tree) if data is None else Path(data)
    tiles = load_dataset(data, "train")
    index = {tile_id: i for i, tile_id in enumerate(tiles.ids)}
    missing = [i for i in oof["ids"] if i not in index]
    if missing:
        raise SaltsegError(
            f"{data}: {len(missing)} out-of-fold id(s) of {run} not among the training tiles, "
            f"e.g. {missing[0]!r}"
        )
    tiles = tiles.subset([index[i] for i in oof["ids"]])
    summary = run / "oof_score.json"
    threshold = DEFAULT_THRESHOLD
    if summary.exists():
        threshold = float(_read_json(summary).get("threshold", DEFAULT_THRESHOLD))
    pp = _postprocess(run)
    cls = oof.get("cls")
    probs = oof["mask"]
    if pp is not None:
        if pp.cls_threshold and cls is None:
            raise SaltsegError(
                f"{run}/postprocess.json gates on a classifier, but the run has no classifier "
                "output"
            )
        pred = pp.apply(probs, tiles.images, cls)
    else:
        pred = probs > threshold
    fold_info = {}
    for path in sorted(run.glob("fold_*/score.json")):
        fold_info[int(path.parent.name.split("_")[1])] = _read_json(path)
    model = tree.get("model") or {}
    return RunInputs(
        run=run,
        data=data,
        name=str(tree.get("name") or run.name),
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
    )
