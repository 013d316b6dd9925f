"""Files of the jigsaw solver: tiles in, ``neighbors.csv`` and ``mosaics.csv`` out and back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from saltseg.data.tgs import SPLITS, load_dataset, load_masks
from saltseg.errors import SaltsegError

NEIGHBOR_COLUMNS = ["a", "b", "side", "distance", "ratio"]
MOSAIC_COLUMNS = ["id", "mosaic", "row", "col"]
SIDE_NAMES = ("right", "below")


@dataclass
class Tiles:
    """Train and test tiles together.

    Attributes:
        ids: Tile ids, train first, each sorted.
        images: float32 ``(N, H, W)`` in [0, 1].
        masks: id -> bool mask, for the training tiles.
        splits: ``(N,)`` ``"train"`` or ``"test"``.
    """

    ids: list[str]
    images: np.ndarray
    masks: dict[str, np.ndarray]
    splits: np.ndarray


def load_tiles(root: str | Path) -> Tiles:
    """Read every tile of a Kaggle-layout folder (``train/`` and ``test/``, whichever exist).

    Raises:
        SaltsegError: neither split present, an empty split, tiles of another size than
            101x101, unreadable images, or an id in both splits.
    """
    root = Path(root)
    present = [s for s in SPLITS if (root / s / "images").is_dir()]
    if not present:
        raise SaltsegError(f"{root}: no train/images or test/images folder")
    ids: list[str] = []
    images, splits, masks = [], [], {}
    for split in present:
        tiles = load_dataset(root, split)
        ids.extend(tiles.ids)
        images.append(tiles.images)
        splits.extend([split] * len(tiles))
        if tiles.masks is not None:
            masks.update(zip(tiles.ids, tiles.masks, strict=True))
    if len(set(ids)) < len(ids):
        twice = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise SaltsegError(f"{root}: tile id {twice!r} is in both train and test")
    return Tiles(ids, np.concatenate(images), masks, np.array(splits))


def load_predictions(source: str | Path, ids: list[str]) -> dict[str, np.ndarray]:
    """Predicted masks from a submission CSV (``id,rle_mask``) or a folder of mask PNGs.

    Raises:
        SaltsegError: unreadable file, or an id that is not one of ``ids``.
    """
    pred_ids, masks = load_masks(source)
    known = set(ids)
    unknown = [i for i in pred_ids if i not in known]
    if unknown:
        raise SaltsegError(
            f"{source}: {len(unknown)} predicted id(s) are not tiles of the data, "
            f"e.g. {unknown[0]!r}"
        )
    return dict(zip(pred_ids, masks, strict=True))


def _read_csv(path: str | Path, columns: list[str]) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise SaltsegError(f"{path} does not exist")
    try:
        frame = pd.read_csv(path, dtype={"id": str, "a": str, "b": str})
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise SaltsegError(f"{path}: malformed CSV ({str(err).splitlines()[0]})") from None
    except pd.errors.EmptyDataError:
        raise SaltsegError(f"{path}: empty file") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SaltsegError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    return frame


def _integers(frame: pd.DataFrame, columns: list[str], path: str | Path) -> pd.DataFrame:
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any() or (values != values.round()).any():
            raise SaltsegError(f"{path}: column {column} must hold integers")
        frame[column] = values.astype(np.int64)
    return frame


def read_neighbors(path: str | Path) -> pd.DataFrame:
    """Read ``neighbors.csv`` (``a, b, side, distance, ratio``; only ``a, b, side`` required)."""
    frame = _read_csv(path, ["a", "b", "side"])
    bad = frame.loc[~frame["side"].isin(SIDE_NAMES), "side"]
    if len(bad):
        raise SaltsegError(f"{path}: side {bad.iloc[0]!r} is not one of {list(SIDE_NAMES)}")
    return frame


def read_mosaics(path: str | Path) -> pd.DataFrame:
    """Read ``mosaics.csv`` (``id, mosaic, row, col``), one row per tile."""
    frame = _integers(_read_csv(path, MOSAIC_COLUMNS), ["row", "col"], path)
    frame["mosaic"] = frame["mosaic"].astype(str)
    twice = frame["id"][frame["id"].duplicated()]
    if len(twice):
        raise SaltsegError(f"{path}: tile {twice.iloc[0]!r} appears more than once")
    return frame


def read_truth(path: str | Path) -> pd.DataFrame:
    """Read ``mosaic_truth.csv`` (``id, section, row, col``), one row per tile."""
    frame = _integers(_read_csv(path, ["id", "section", "row", "col"]), ["row", "col"], path)
    twice = frame["id"][frame["id"].duplicated()]
    if len(twice):
        raise SaltsegError(f"{path}: tile {twice.iloc[0]!r} appears more than once")
    return frame


def mosaic_groups(mosaics_csv: str | Path) -> dict[str, str]:
    """Tile id -> mosaic id, from a ``mosaics.csv`` (for folds that keep mosaics together)."""
    frame = read_mosaics(mosaics_csv)
    return dict(zip(frame["id"], frame["mosaic"], strict=True))
