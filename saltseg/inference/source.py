"""Tiles to predict, read from disk a chunk at a time.

A source is a Kaggle-layout data folder (``D/<split>/images/*.png`` with ``D/depths.csv``) or a
plain folder of PNG tiles (with an optional ``depths.csv`` beside them). Only the ids, paths and
depths are held; images are read when a chunk is asked for, so memory does not grow with the
number of tiles.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saltseg.data.tgs import read_depths
from saltseg.data.tiles_io import read_image, tile_pngs


@dataclass
class TileSource:
    """Ids (sorted), image paths and depths of the tiles of one folder.

    Attributes:
        ids: Tile ids, sorted.
        paths: The PNG of each tile.
        depths: float32 ``(N,)``, NaN where unknown.
        folder: The folder the PNGs are in.
    """

    ids: list[str]
    paths: list[Path]
    depths: np.ndarray
    folder: Path

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, start: int, stop: int) -> np.ndarray:
        """float32 images ``(stop - start, 101, 101)`` in [0, 1] of tiles ``start:stop``."""
        paths = self.paths[start:stop]
        if not paths:
            return np.zeros((0, 101, 101), dtype=np.float32)
        return np.stack([read_image(path) for path in paths])

    def chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, images)`` for consecutive chunks of at most ``size`` tiles."""
        for start in range(0, len(self), size):
            yield start, self.read(start, min(start + size, len(self)))


def open_tiles(data: str | Path, split: str = "test") -> TileSource:
    """The tiles of ``data/<split>/images`` if that folder exists, else the PNGs in ``data``.

    Depths come from ``data/depths.csv`` when it exists (every tile must be listed there).

    Raises:
        SaltsegError: a missing folder or one without PNG images, a depths.csv lacking a tile.
    """
    root = Path(data)
    folder, paths = tile_pngs(root, split, "images")
    ids = [path.stem for path in paths]
    depths_csv = root / "depths.csv"
    if depths_csv.exists():
        depths = read_depths(depths_csv, ids)
    else:
        depths = np.full(len(ids), np.nan, dtype=np.float32)
    return TileSource(ids=ids, paths=paths, depths=depths, folder=folder)
