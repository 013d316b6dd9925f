"""Pretraining windows cut from seismic files: SEG-Y lines and cubes, ``.npy`` arrays, images.

A file is opened as ``predict-volume`` opens it (:func:`saltseg.volume.io.open_volume`) and
scaled the same way: amplitudes clipped at robust percentiles measured on a sample of traces of
the whole file and mapped to [0, 1], so a pretrained encoder sees what it will see at inference.
Windows of ``size x size`` (rows = depth or time, columns = traces) lie on a grid without overlap
on every inline and, for a cube, every crossline; windows that touch a missing or dead trace are
left out. At most ``max_windows`` of them are drawn at random (seeded), reading one line at a
time, so a cube larger than memory is never loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from saltseg.errors import SaltsegError
from saltseg.rle import TILE
from saltseg.volume.io import Volume, open_volume
from saltseg.volume.scaling import Scaling, apply_clip, measure_clip

SEISMIC_SUFFIXES = (".sgy", ".segy", ".npy", ".png", ".tif", ".tiff")
DEFAULT_WINDOWS = 10000


def _grid(volume: Volume, axis: int, size: int) -> tuple[int, int, int]:
    """Lines along ``axis`` and windows per line (rows, columns) of the non-overlapping grid."""
    lines, traces, samples = volume.shape
    across = traces if axis == 0 else lines
    return (lines if axis == 0 else traces), samples // size, across // size


def _live(volume: Volume, axis: int, line: int) -> np.ndarray:
    return volume.live[line] if axis == 0 else volume.live[:, line]


def section_windows(
    path: str | Path,
    max_windows: int = DEFAULT_WINDOWS,
    seed: int = 0,
    size: int = TILE,
    scaling: Scaling | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Up to ``max_windows`` scaled windows ``(N, size, size)`` float32 of a seismic file.

    Returns:
        The windows and the facts to record: file, shape, clip values, windows taken and the
        number on the grid.

    Raises:
        SaltsegError: an unreadable file, NaN or constant amplitudes, sections smaller than one
            window, or no window free of holes.
    """
    if max_windows < 1:
        raise SaltsegError(f"windows per file must be at least 1, got {max_windows}")
    volume = open_volume(path)
    where = str(path)
    axes = [0] if volume.is_2d else [0, 1]
    grids = [_grid(volume, axis, size) for axis in axes]
    if all(rows == 0 or cols == 0 for _, rows, cols in grids):
        _, traces, samples = volume.shape
        raise SaltsegError(
            f"{where}: sections of {samples} samples x {traces} traces are smaller than one "
            f"{size}x{size} window"
        )
    low, high = measure_clip(volume, scaling or Scaling())
    # Every window on the grid is (axis, line, row, column); number them and draw at random.
    per_line = [rows * cols for _, rows, cols in grids]
    totals = [n_lines * n for (n_lines, _, _), n in zip(grids, per_line, strict=True)]
    total = sum(totals)
    rng = np.random.default_rng(seed)
    # A few times more than needed, since windows touching holes are skipped.
    if total <= 4 * max_windows:
        drawn = rng.permutation(total)
    else:
        drawn = rng.choice(total, 4 * max_windows, replace=False)
    chosen: dict[tuple[int, int], list[tuple[int, int]]] = {}
    taken = 0
    for flat in drawn:
        rest, axis_index = int(flat), 0
        while rest >= totals[axis_index]:
            rest -= totals[axis_index]
            axis_index += 1
        line, cell = divmod(rest, per_line[axis_index])
        row, col = divmod(cell, grids[axis_index][2])
        axis = axes[axis_index]
        if not _live(volume, axis, line)[col * size : (col + 1) * size].all():
            continue
        chosen.setdefault((axis, line), []).append((row * size, col * size))
        taken += 1
        if taken == max_windows:
            break
    if not taken:
        raise SaltsegError(f"{where}: every {size}x{size} window touches a missing or dead trace")
    windows = []
    for (axis, line), corners in sorted(chosen.items()):
        section = apply_clip(volume.read(axis, line, line + 1)[0].T, low, high)
        windows += [section[r : r + size, c : c + size] for r, c in sorted(corners)]
    info = {
        "file": str(Path(path).resolve()),
        "shape": [int(v) for v in volume.shape],
        "clip": [float(low), float(high)],
        "images": len(windows),
        "windows_on_grid": int(total),
        "directions": ["inline", "crossline"][: len(axes)],
    }
    return np.stack(windows).astype(np.float32, copy=False), info
