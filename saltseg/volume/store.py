"""The probability accumulator: a float32 grid in memory or in a file, added to a slab at a time.

A file-backed accumulator is read and written with explicit file I/O, a slab at a time (see
:mod:`saltseg.volume.blocks`), never memory-mapped, so the pages of a cube larger than memory never
count in the process. Slabs of different lines are disjoint and only their bytes are written, so
several processes may add to one file at once as long as they take different lines of the same
direction (directions are separated by a barrier).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from saltseg.volume.blocks import read_block, write_block


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

    def _open(self, flags: int) -> int:
        assert self.path is not None
        return os.open(self.path, flags)

    def add(self, axis: int, start: int, stop: int, values: np.ndarray) -> None:
        """Add ``values`` (in the layout of :meth:`Volume.read`) to lines ``start:stop``."""
        if self.array is not None:
            np.moveaxis(self.array, axis, 0)[start:stop] += values
            return
        fd = self._open(os.O_RDWR)
        try:
            block = read_block(fd, 0, self.shape, np.float32, axis, start, stop)
            np.moveaxis(block, axis, 0)[...] += values
            write_block(fd, 0, self.shape, axis, start, block)
        finally:
            os.close(fd)

    def read(self, start: int, stop: int) -> np.ndarray:
        """A copy of lines ``start:stop`` (inline axis) ``(k, traces, samples)``."""
        if self.array is not None:
            return self.array[start:stop].copy()
        fd = self._open(os.O_RDONLY)
        try:
            return read_block(fd, 0, self.shape, np.float32, 0, start, stop)
        finally:
            os.close(fd)

    def read_cells(self, cells: np.ndarray) -> np.ndarray:
        """A copy of the traces at flat grid ``cells`` ``(n, samples)``."""
        cells = np.asarray(cells, dtype=np.int64)
        if self.array is not None:
            return self.array.reshape(-1, self.shape[-1])[cells]
        n_cells, n_samples = int(np.prod(self.shape[:2])), self.shape[-1]
        traces = np.empty((len(cells), n_samples), np.float32)
        if len(cells) == 0:
            return traces
        breaks = np.flatnonzero(np.diff(cells) != 1) + 1
        fd = self._open(os.O_RDONLY)
        try:  # each run of consecutive cells is one contiguous read
            for a, b in zip([0, *breaks], [*breaks, len(cells)], strict=True):
                first = int(cells[a])
                traces[a:b] = read_block(
                    fd, 0, (n_cells, n_samples), np.float32, 0, first, first + b - a
                )
        finally:
            os.close(fd)
        return traces


def slabs(n_lines: int, line_bytes: int, slab_mb: float, min_slabs: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive slabs of lines under ``slab_mb``, at least ``min_slabs``."""
    per_slab = max(1, int(slab_mb * 2**20 // max(1, line_bytes)))
    per_slab = min(per_slab, max(1, -(-n_lines // min_slabs)))
    return [(a, min(a + per_slab, n_lines)) for a in range(0, n_lines, per_slab)]
