"""The jigsaw solver end to end: tiles -> candidates -> links -> mosaics -> files."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saltseg.errors import SaltsegError
from saltseg.mosaic.config import MosaicConfig
from saltseg.mosaic.io import MOSAIC_COLUMNS, NEIGHBOR_COLUMNS, load_predictions, load_tiles
from saltseg.mosaic.links import find_candidates, mutual_links
from saltseg.mosaic.render import render_mosaic, save_png
from saltseg.mosaic.solver import assemble
from saltseg.outputs import OutputFolder

MANIFEST = "mosaic.json"


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
    overwrite: bool = False,
) -> dict[str, Any]:
    """Solve the jigsaw of a Kaggle-layout folder and write the results.

    Writes ``OUT/neighbors.csv`` (every pair of tiles side by side in a mosaic: ``a, b, side,
    distance, ratio``, ``b`` right of / below ``a``; distance and ratio empty at a degenerate
    edge), ``OUT/mosaics.csv`` (``id, mosaic, row, col``) and ``OUT/mosaic_NNNN.png`` for every
    mosaic of at least ``min_size`` tiles (training masks tinted red, predictions blue).

    Args:
        data: Folder with ``train/images``, ``train/masks`` and/or ``test/images``.
        out: Output folder: missing, empty, or holding an earlier mosaic (``mosaic.json``) that
            ``overwrite`` replaces once the new files are complete.
        pred: Optional submission CSV (``id,rle_mask``) or folder of mask PNGs to overlay.
        config: Solver settings.
        min_size: Smallest mosaic drawn.
        overwrite: Replace an earlier mosaic in ``out``.

    Returns:
        A summary: ``tiles``, ``links``, ``mosaics``, ``largest``, ``drawn``, ``seconds``.
    """
    start = time.perf_counter()
    if min_size < 1:
        raise SaltsegError(f"min_size must be at least 1, got {min_size}")
    folder = OutputFolder(out, MANIFEST, overwrite)
    tiles = load_tiles(data)
    predictions = None if pred is None else load_predictions(pred, tiles.ids)
    result = solve(tiles.images, tiles.ids, config)
    staging = folder.stage()
    try:
        summary = _write(staging, result, tiles, predictions, min_size)
    except BaseException:
        folder.abort()
        raise
    summary.update(tiles=len(tiles.ids), seconds=time.perf_counter() - start)
    folder.publish(summary)
    return summary


def _write(
    out: Path, result: Any, tiles: Any, predictions: np.ndarray | None, min_size: int
) -> dict[str, Any]:
    result.neighbors.to_csv(out / "neighbors.csv", index=False)
    result.mosaics.to_csv(out / "mosaics.csv", index=False)
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
        "links": len(result.neighbors),
        "mosaics": len(sizes),
        "largest": int(sizes.max()),
        "drawn": drawn,
    }
