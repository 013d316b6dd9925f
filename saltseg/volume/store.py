"""The probability accumulator: a float32 grid in memory or in a file, added to a slab at a time.

A file-backed accumulator is memory-mapped anew for each slab and unmapped after it, so the
pages of a cube larger than memory never pile up in the process. Slabs of different lines are
disjoint, so several processes may add to one file at once as long as they take different lines
of the same direction (directions are separated by a barrier).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Accumulator:
    """Sums of per-direction probabilities on the grid ``(lines, traces, samples)``.

    Args:
        shape: The grid.
        path: A file to hold the sums (created zero-filled by :meth:`create`), or None to keep
            them in memory.
    """

    def __init__(self, shape: tuple[int, int, int], path: str | Path | None = None) -> None:
        self.shape, self.path = tuple(shape), None if path is None else Path(path)
        self.array = np.zeros(self.shape, dtype=np.float32) if path is None else None

    @property
    def nbytes(self) -> int:
        """Size of the sums in bytes."""
        return int(np.prod(self.shape)) * 4

    def create(self) -> Accumulator:
        """Create the zero-filled file (sparse where the file system allows)."""
        if self.path is not None:
            with open(self.path, "wb") as handle:
                handle.truncate(self.nbytes)
        return self

    def _map(self, mode: str) -> np.ndarray:
        if self.array is not None:
            return self.array
        return np.memmap(self.path, np.float32, mode, 0, self.shape)

    def add(self, axis: int, start: int, stop: int, values: np.ndarray) -> None:
        """Add ``values`` (in the layout of :meth:`Volume.read`) to lines ``start:stop``."""
        grid = self._map("r+")
        view = np.moveaxis(grid, axis, 0)[start:stop]
        view += values
        if self.array is None:
            grid.flush()
        del grid, view

    def read(self, start: int, stop: int) -> np.ndarray:
        """A copy of lines ``start:stop`` (inline axis) ``(k, traces, samples)``."""
        grid = self._map("r")
        slab = np.array(grid[start:stop])
        del grid
        return slab

    def read_cells(self, cells: np.ndarray) -> np.ndarray:
        """A copy of the traces at flat grid ``cells`` ``(n, samples)``."""
        grid = self._map("r")
        traces = np.array(grid.reshape(-1, self.shape[-1])[cells])
        del grid
        return traces


def slabs(n_lines: int, line_bytes: int, slab_mb: float, min_slabs: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive slabs of lines under ``slab_mb``, at least ``min_slabs``."""
    per_slab = max(1, int(slab_mb * 2**20 // max(1, line_bytes)))
    per_slab = min(per_slab, max(1, -(-n_lines // min_slabs)))
    return [(a, min(a + per_slab, n_lines)) for a in range(0, n_lines, per_slab)]
