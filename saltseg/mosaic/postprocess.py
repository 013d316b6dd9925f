"""Post-processing with the mosaic: continue vertical salt from a tile into the tile below it.

Salt flanks are often near-vertical over more than one tile. When a tile's predicted mask is
vertical at its bottom (its last rows are identical) and touches the bottom edge, and the tile
directly below is uncertain (most of its probabilities are near 0.5), the salt columns are carried
down through that tile. Tiles are handled from the top of each mosaic down, so the salt can run
through a chain of uncertain tiles.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from saltseg.errors import SaltsegError
from saltseg.postprocess import DEFAULT_THRESHOLD


def uncertainty(probability: np.ndarray) -> float:
    """Mean of ``1 - |2p - 1|``: 1 when every pixel is 0.5, 0 when every pixel is 0 or 1."""
    return float(np.mean(1 - np.abs(2 * np.asarray(probability, dtype=np.float64) - 1)))


def _vertical_bottom(mask: np.ndarray, rows: int) -> np.ndarray | None:
    """The salt columns of the bottom row if the last ``rows`` rows are identical, else None."""
    bottom = mask[-rows:]
    if not bottom[-1].any() or not (bottom == bottom[-1]).all():
        return None
    return bottom[-1]


def continue_salt_down(
    mosaics: pd.DataFrame,
    probabilities: Mapping[str, np.ndarray],
    threshold: float = DEFAULT_THRESHOLD,
    vertical_rows: int = 20,
    min_uncertainty: float = 0.5,
) -> dict[str, np.ndarray]:
    """Carry vertical salt at the bottom of a tile into the uncertain tile below it.

    Args:
        mosaics: ``id, mosaic, row, col`` (as in ``mosaics.csv``).
        probabilities: id -> ``(H, W)`` salt probabilities; tiles without one are skipped.
        threshold: Probability above which a pixel is salt.
        vertical_rows: Bottom rows that must be identical for the salt to count as vertical.
        min_uncertainty: The tile below is changed only when its :func:`uncertainty` is at least
            this.

    Returns:
        A new id -> probabilities mapping (the inputs are not modified): in the salt columns the
        tile below gets, on every row, at least the probability of the bottom row above it.
    """
    missing = [c for c in ("id", "mosaic", "row", "col") if c not in mosaics.columns]
    if missing:
        raise SaltsegError(f"mosaics need columns id, mosaic, row, col; missing {missing}")
    if vertical_rows < 1:
        raise SaltsegError(f"vertical_rows must be at least 1, got {vertical_rows}")
    result = {key: np.array(value, dtype=np.float32) for key, value in probabilities.items()}
    cell = {
        (m, r, c): i
        for i, m, r, c in mosaics[["id", "mosaic", "row", "col"]].itertuples(index=False)
    }
    for tile_id, m, r, c in mosaics.sort_values(["mosaic", "row"])[
        ["id", "mosaic", "row", "col"]
    ].itertuples(index=False):
        below = cell.get((m, r + 1, c))
        if tile_id not in result or below not in result:
            continue
        above, under = result[tile_id], result[below]
        if above.shape != under.shape:
            raise SaltsegError(f"tiles {tile_id!r} and {below!r} have different shapes")
        columns = _vertical_bottom(above > threshold, min(vertical_rows, above.shape[0]))
        if columns is None or uncertainty(under) < min_uncertainty:
            continue
        under[:, columns] = np.maximum(under[:, columns], above[-1, columns])
    return result
