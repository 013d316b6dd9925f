"""Read and write the Kaggle TGS layout.

::

    ROOT/train/images/<id>.png   RGB (three equal channels) or grayscale, 101x101
    ROOT/train/masks/<id>.png    16-bit {0, 65535} for salt tiles, 8-bit zeros for empty ones
    ROOT/test/images/<id>.png
    ROOT/depths.csv              id,z
    ROOT/train.csv               id,rle_mask

Tiles are returned in sorted-id order as float32 images in [0, 1] and boolean masks (PNGs are
read by :mod:`saltseg.data.tiles_io`). Reading is cached in one ``.npz`` per split (keyed by the
files' names, sizes and modification times), so a second read of 22000 tiles is fast; the cache
lives outside the data folder, which may be read-only.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from saltseg.data.tiles_io import png_ids, read_image, read_mask, tile_pngs
from saltseg.errors import SaltsegError
from saltseg.io import atomic_path
from saltseg.rle import TILE_SHAPE, rle_decode

SPLITS = ("train", "test")


@dataclass
class TileSet:
    """Tiles of one split, in sorted-id order.

    Attributes:
        ids: Tile ids, sorted.
        images: float32 ``(N, H, W)`` in [0, 1].
        masks: bool ``(N, H, W)``, or None for unlabelled tiles.
        depths: float32 ``(N,)`` in feet, NaN where depths.csv is absent.
    """

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray | None
    depths: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray | list[int]) -> TileSet:
        """The tiles at ``index`` (positions), in that order."""
        index = np.asarray(index, dtype=np.int64)
        return TileSet(
            ids=[self.ids[i] for i in index],
            images=self.images[index],
            masks=None if self.masks is None else self.masks[index],
            depths=self.depths[index],
        )

    @property
    def coverage(self) -> np.ndarray:
        """Fraction of salt pixels per tile (needs masks)."""
        if self.masks is None:
            raise SaltsegError("these tiles have no masks")
        return self.masks.reshape(len(self), -1).mean(axis=1)


def concat_tiles(sets: list[TileSet]) -> TileSet:
    """The tiles of several sets, one after another (all labelled, or all unlabelled).

    Raises:
        SaltsegError: no set, labelled mixed with unlabelled tiles, or an id in two sets.
    """
    if not sets:
        raise SaltsegError("no tiles to join")
    labelled = {s.masks is not None for s in sets}
    if len(labelled) > 1:
        raise SaltsegError("cannot join labelled and unlabelled tiles")
    ids = [i for s in sets for i in s.ids]
    seen: set[str] = set()
    for tile_id in ids:
        if tile_id in seen:
            raise SaltsegError(f"tile {tile_id!r} is in two of the tile sets joined")
        seen.add(tile_id)
    return TileSet(
        ids=ids,
        images=np.concatenate([s.images for s in sets]),
        masks=np.concatenate([s.masks for s in sets]) if labelled == {True} else None,
        depths=np.concatenate([s.depths for s in sets]),
    )


def _cache_dir() -> Path:
    env = os.environ.get("SALTSEG_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "saltseg"


def read_id_csv(path: Path, column: str) -> pd.Series:
    """Read a two-column ``id,<column>`` CSV into a Series indexed by id, rejecting duplicates."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"id": str}, keep_default_na=False, na_values=[])
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise SaltsegError(f"{path}: malformed CSV ({str(err).splitlines()[0]})") from None
    except pd.errors.EmptyDataError:
        raise SaltsegError(f"{path}: empty file") from None
    missing = {"id", column} - set(frame.columns)
    if missing:
        raise SaltsegError(
            f"{path}: missing column(s) {sorted(missing)}; found {list(frame.columns)}"
        )
    duplicated = frame["id"][frame["id"].duplicated()]
    if len(duplicated):
        raise SaltsegError(f"{path}: duplicate id {duplicated.iloc[0]!r}")
    return frame.set_index("id")[column]


def read_depths(path: Path, ids: list[str]) -> np.ndarray:
    """Depths of ``ids`` from a depths.csv; every id must be present exactly once."""
    series = read_id_csv(path, "z")
    absent = [i for i in ids if i not in series.index]
    if absent:
        raise SaltsegError(f"{path}: no depth for {len(absent)} tile(s), e.g. {absent[0]!r}")
    try:
        return series.loc[ids].to_numpy(dtype=np.float32)
    except ValueError:
        raise SaltsegError(f"{path}: column z has non-numeric values") from None


def read_rle_csv(path: Path, shape: tuple[int, int] = TILE_SHAPE) -> tuple[list[str], np.ndarray]:
    """Decode an ``id,rle_mask`` CSV (train.csv or a submission) into sorted ids and masks."""
    series = read_id_csv(path, "rle_mask")
    ids = sorted(series.index)
    masks = np.empty((len(ids), *shape), dtype=bool)
    for k, tile_id in enumerate(ids):
        try:
            masks[k] = rle_decode(series[tile_id], shape)
        except SaltsegError as err:
            raise SaltsegError(f"{path}: id {tile_id!r}: {err}") from None
    return ids, masks


def _fingerprint(root: Path, split: str, folders: list[Path]) -> str:
    digest = hashlib.sha1(str(root.resolve()).encode())
    digest.update(split.encode())
    for folder in folders:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.endswith(".png"):
                stat = entry.stat()
                digest.update(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    for name in ("depths.csv", "train.csv"):
        if (root / name).exists():
            stat = (root / name).stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:20]


def _check_pairs(image_ids: list[str], mask_ids: list[str], root: Path) -> None:
    images, masks = set(image_ids), set(mask_ids)
    if images - masks:
        first = sorted(images - masks)[0]
        raise SaltsegError(
            f"{root}/train/images/{first}.png has no mask in train/masks "
            f"({len(images - masks)} image(s) without a mask)"
        )
    if masks - images:
        first = sorted(masks - images)[0]
        raise SaltsegError(
            f"{root}/train/masks/{first}.png has no image in train/images "
            f"({len(masks - images)} mask(s) without an image)"
        )


def load_dataset(root: str | Path, split: str = "train", cache: bool = True) -> TileSet:
    """Load one split of a Kaggle-layout data folder.

    Args:
        root: The folder holding ``train/`` and/or ``test/``, ``depths.csv`` and ``train.csv``.
        split: ``"train"`` (images and masks) or ``"test"`` (images only).
        cache: Read from and write to the ``.npz`` cache (``$SALTSEG_CACHE_DIR``, else
            ``~/.cache/saltseg``).

    Raises:
        SaltsegError: a missing folder, an image without a mask or the reverse, a tile that is not
            101x101, an unreadable PNG, a depths.csv or train.csv with missing or duplicate ids.
    """
    root = Path(root)
    if split not in SPLITS:
        raise SaltsegError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    image_dir = root / split / "images"
    if not image_dir.is_dir():
        raise SaltsegError(f"missing folder {image_dir}")
    mask_dir = root / split / "masks"
    labelled = split == "train"
    if labelled and not mask_dir.is_dir():
        raise SaltsegError(f"missing folder {mask_dir}")
    folders = [image_dir, mask_dir] if labelled else [image_dir]

    cache_file = None
    if cache:
        cache_file = _cache_dir() / f"{split}-{_fingerprint(root, split, folders)}.npz"
        if cache_file.exists():
            return _read_cache(cache_file)

    ids = png_ids(image_dir)
    if not ids:
        raise SaltsegError(f"no PNG images in {image_dir}")
    if labelled:
        _check_pairs(ids, png_ids(mask_dir), root)
        if (root / "train.csv").exists():
            rle_ids = set(read_id_csv(root / "train.csv", "rle_mask").index)
            absent = [i for i in ids if i not in rle_ids]
            if absent:
                raise SaltsegError(
                    f"{root / 'train.csv'}: no row for {len(absent)} tile(s), e.g. {absent[0]!r}"
                )
    images = np.stack([read_image(image_dir / f"{i}.png") for i in ids])
    masks = np.stack([read_mask(mask_dir / f"{i}.png") for i in ids]) if labelled else None
    depths_csv = root / "depths.csv"
    if depths_csv.exists():
        depths = read_depths(depths_csv, ids)
    else:
        depths = np.full(len(ids), np.nan, dtype=np.float32)
    tiles = TileSet(ids=ids, images=images, masks=masks, depths=depths)
    if cache_file is not None:
        _write_cache(cache_file, tiles)
    return tiles


def _write_cache(path: Path, tiles: TileSet) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "ids": np.array(tiles.ids),
            "images": np.rint(tiles.images * 65535).astype(np.uint16),
            "depths": tiles.depths,
        }
        if tiles.masks is not None:
            arrays["masks"] = np.packbits(tiles.masks, axis=-1)
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)
    except OSError:
        return  # a cache that cannot be written only costs speed


def _read_cache(path: Path) -> TileSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            width = data["images"].shape[-1]
            masks = None
            if "masks" in data:
                masks = np.unpackbits(data["masks"], axis=-1, count=width).astype(bool)
            return TileSet(
                ids=[str(i) for i in data["ids"]],
                images=data["images"].astype(np.float32) / 65535,
                masks=masks,
                depths=data["depths"],
            )
    except Exception as err:  # noqa: BLE001 - numpy and zipfile raise many kinds on a bad file
        raise SaltsegError(
            f"corrupt tile cache {path} ({type(err).__name__}): delete it and saltseg rebuilds "
            "it, or pass cache=False"
        ) from None


def load_masks(source: str | Path) -> tuple[list[str], np.ndarray]:
    """Masks from a data folder (``train/masks``), a folder of mask PNGs, or an RLE CSV.

    Returns:
        Sorted ids and a bool array ``(N, 101, 101)``.
    """
    source = Path(source)
    if not source.exists():
        raise SaltsegError(f"{source} does not exist")
    if source.is_file():
        return read_rle_csv(source)
    _, paths = tile_pngs(source, "train", "masks")
    return [p.stem for p in paths], np.stack([read_mask(p) for p in paths])
