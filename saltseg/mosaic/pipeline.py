"""The jigsaw solver end to end: tiles -> candidates -> links -> mosaics -> files."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from saltseg.errors import SaltsegError
from saltseg.mosaic.config import MosaicConfig
from saltseg.mosaic.io import MOSAIC_COLUMNS, NEIGHBOR_COLUMNS, load_predictions, load_tiles
from saltseg.mosaic.links import find_candidates, mutual_links
from saltseg.mosaic.render import render_mosaic, save_png
from saltseg.mosaic.solver import assemble


@dataclass
class MosaicResult:
    """What the solver found.

    Attributes:
        mosaics: ``id, mosaic, row, col``, one row per tile (mosaic 0 is the largest).
        neighbors: ``a, b, side, distance, ratio``: tile ``b`` is right of / below tile ``a``
            in a mosaic (see :meth:`Candidates.ratio` for ``ratio``).
    """

    mosaics: pd.DataFrame
    neighbors: pd.DataFrame


def solve(
    images: np.ndarray, ids: list[str] | None = None, config: MosaicConfig | None = None
) -> MosaicResult:
    """Find neighbours among tiles and assemble them into mosaics.

    Args:
        images: ``(N, H, W)`` tiles in [0, 1].
        ids: Tile ids (default ``"0"``, ``"1"``, ...).
        config: Solver settings (defaults when None).
    """
    images = np.asarray(images)
    if images.ndim != 3 or len(images) == 0:
        raise SaltsegError(f"need a non-empty (N, H, W) array of tiles, got shape {images.shape}")
    ids = [str(i) for i in range(len(images))] if ids is None else list(ids)
    if len(ids) != len(images):
        raise SaltsegError(f"{len(ids)} ids for {len(images)} tiles")
    cfg = config or MosaicConfig()
    candidates = find_candidates(images, cfg)
    links = mutual_links(candidates, cfg)
    positions, pairs = assemble(len(images), links, candidates, cfg)
    names = np.asarray(ids, dtype=object)
    mosaics = positions.assign(id=names)[MOSAIC_COLUMNS]
    neighbors = pairs.assign(a=names[pairs["a"].to_numpy()], b=names[pairs["b"].to_numpy()])
    return MosaicResult(mosaics, neighbors[NEIGHBOR_COLUMNS])


def run_mosaic(
    data: str | Path,
    out: str | Path,
    pred: str | Path | None = None,
    config: MosaicConfig | None = None,
    min_size: int = 8,
) -> dict[str, float]:
    """Solve the jigsaw of a Kaggle-layout folder and write the results.

    Writes ``OUT/neighbors.csv`` (every pair of tiles side by side in a mosaic: ``a, b, side,
    distance, ratio``, ``b`` right of / below ``a``; distance and ratio empty at a degenerate
    edge), ``OUT/mosaics.csv`` (``id, mosaic, row, col``) and ``OUT/mosaic_NNNN.png`` for every
    mosaic of at least ``min_size`` tiles (training masks tinted red, predictions blue).

    Args:
        data: Folder with ``train/images``, ``train/masks`` and/or ``test/images``.
        out: Output folder (created; earlier mosaic PNGs in it are removed).
        pred: Optional submission CSV (``id,rle_mask``) or folder of mask PNGs to overlay.
        config: Solver settings.
        min_size: Smallest mosaic drawn.

    Returns:
        A summary: ``tiles``, ``links``, ``mosaics``, ``largest``, ``drawn``, ``seconds``.
    """
    start = time.perf_counter()
    if min_size < 1:
        raise SaltsegError(f"min_size must be at least 1, got {min_size}")
    tiles = load_tiles(data)
    predictions = None if pred is None else load_predictions(pred, tiles.ids)
    result = solve(tiles.images, tiles.ids, config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.neighbors.to_csv(out / "neighbors.csv", index=False)
    result.mosaics.to_csv(out / "mosaics.csv", index=False)
    for old in out.glob("mosaic_*.png"):
        old.unlink()
    sizes = result.mosaics["mosaic"].value_counts()
    drawn = 0
    for number, group in result.mosaics.groupby("mosaic"):
        if sizes[number] < min_size:
            continue
        rows = group.index.to_numpy()
        picture = render_mosaic(
            group["id"].tolist(),
            tiles.images[rows],
            group["row"].to_numpy(),
            group["col"].to_numpy(),
            masks=tiles.masks,
            predictions=predictions,
        )
        save_png(out / f"mosaic_{int(number):04d}.png", picture)
        drawn += 1
    return {
        "tiles": len(tiles.ids),
        "links": len(result.neighbors),
        "mosaics": len(sizes),
        "largest": int(sizes.max()),
        "drawn": drawn,
        "seconds": time.perf_counter() - start,
    }
