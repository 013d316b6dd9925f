"""Draw an assembled mosaic as one RGB image, with training masks and predictions overlaid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from saltseg.errors import SaltsegError

TRUTH_COLOUR = (255, 48, 48)
PREDICTION_COLOUR = (40, 150, 255)
EMPTY_GREY = 32


def _blend(canvas: np.ndarray, where: np.ndarray, colour: tuple[int, int, int], alpha: float):
    canvas[where] = (1 - alpha) * canvas[where] + alpha * np.asarray(colour, dtype=np.float32)


def render_mosaic(
    tile_ids: Sequence[str],
    images: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    masks: Mapping[str, np.ndarray] | None = None,
    predictions: Mapping[str, np.ndarray] | None = None,
    alpha: float = 0.35,
) -> np.ndarray:
    """Paste tiles at their mosaic cells and tint salt.

    Args:
        tile_ids: Ids of the tiles of one mosaic.
        images: ``(n, H, W)`` tiles in [0, 1], in the order of ``tile_ids``.
        rows, cols: ``(n,)`` cell of each tile.
        masks: Optional id -> bool mask (training masks), tinted red.
        predictions: Optional id -> bool mask, tinted blue (purple where both).
        alpha: Opacity of the tints.

    Returns:
        uint8 ``(rows * H, cols * W, 3)``; cells without a tile are dark grey.
    """
    images = np.asarray(images)
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    if not len(tile_ids) == len(images) == len(rows) == len(cols):
        raise SaltsegError("tile_ids, images, rows and cols must have the same length")
    if len(images) == 0:
        raise SaltsegError("cannot render an empty mosaic")
    h, w = images.shape[1:]
    rows, cols = rows - rows.min(), cols - cols.min()
    canvas = np.full((int(rows.max() + 1) * h, int(cols.max() + 1) * w, 3), EMPTY_GREY, np.float32)
    for tile_id, image, r, c in zip(tile_ids, images, rows, cols, strict=True):
        cell = canvas[r * h : (r + 1) * h, c * w : (c + 1) * w]
        cell[:] = (np.clip(image, 0, 1) * 255)[..., None]
        for overlay, colour in ((masks, TRUTH_COLOUR), (predictions, PREDICTION_COLOUR)):
            if overlay is not None and tile_id in overlay:
                _blend(cell, np.asarray(overlay[tile_id], dtype=bool), colour, alpha)
    return np.rint(canvas).astype(np.uint8)


def save_png(path: str | Path, picture: np.ndarray) -> None:
    """Write an RGB picture as a PNG (fast compression: mosaics are large)."""
    Image.fromarray(picture).save(path, compress_level=1)
