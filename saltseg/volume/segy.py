"""SEG-Y through segyio: where each trace sits on the grid, reading slabs, writing results.

Files are always opened with ``ignore_geometry=True`` and every trace is placed by its inline and
crossline header numbers, so regular cubes, cubes with missing or dead traces (where segyio's own
geometry inference fails) and 2D lines take the same path. A 2D line is a file whose numbers are
all equal on one axis: along its crossline numbers when those are unique, else (zero or repeated
numbers) in file order. Big- and little-endian files are told apart by the binary header's sample
format code. Outputs copy the input's textual, binary and trace headers and hold the same traces
in the same order, as 4-byte IEEE floats in the input's byte order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import segyio

from saltseg.errors import SaltsegError

_CHUNK = 4096  # traces per read
_FORMATS = {1, 2, 3, 5, 6, 8, 10, 11, 12, 15, 16}  # data sample format codes of SEG-Y rev 2
_MIN_FILL = 0.25  # below this share of grid cells with a trace, the header bytes are wrong


@dataclass
class SegyLayout:
    """The grid of a SEG-Y file.

    Attributes:
        shape: ``(lines, traces, samples)``.
        live: bool ``(lines, traces)``.
        cell_of_trace: int64 ``(tracecount,)``: the flat grid cell of each trace, in file order.
        iline_byte: Header byte of the inline number.
        xline_byte: Header byte of the crossline number.
        geometry: ``"3d"``, ``"2d"`` (one line, by its numbers) or ``"2d, file order"``.
        inlines: Inline number of each grid line (None in file order).
        xlines: Crossline number of each grid column (None in file order).
        endian: Byte order of the file, ``"big"`` or ``"little"``.
    """

    shape: tuple[int, int, int]
    live: np.ndarray
    cell_of_trace: np.ndarray
    iline_byte: int
    xline_byte: int
    geometry: str
    inlines: np.ndarray | None
    xlines: np.ndarray | None
    endian: str = "big"

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts: header bytes, geometry, line numbers."""
        numbers = {
            name: [int(values[0]), int(values[-1])] if values is not None else None
            for name, values in (("inline_range", self.inlines), ("crossline_range", self.xlines))
        }
        return {
            "iline_byte": self.iline_byte,
            "xline_byte": self.xline_byte,
            "geometry": self.geometry,
            "endian": self.endian,
            **numbers,
        }


def segy_endian(path: Path) -> str:
    """``"big"`` (the standard) or ``"little"``: the byte order in which the binary header's
    sample format code (bytes 3225-3226) is a valid code."""
    with open(path, "rb") as fh:
        fh.seek(3224)
        raw = fh.read(2)
    big, little = int.from_bytes(raw, "big"), int.from_bytes(raw, "little")
    return "little" if len(raw) == 2 and big not in _FORMATS and little in _FORMATS else "big"


def _open(path: Path) -> segyio.SegyFile:
    try:
        return segyio.open(str(path), "r", ignore_geometry=True, endian=segy_endian(path))
    except (RuntimeError, OSError, ValueError, IndexError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SaltsegError(f"{path}: not a readable SEG-Y file (truncated?): {message}") from None


def _axis_numbers(values: np.ndarray) -> np.ndarray:
    """The grid of line numbers: every step from first to last, unless that is mostly gaps."""
    unique = np.unique(values)
    if len(unique) < 2:
        return unique
    step = int(np.gcd.reduce(np.diff(unique)))
    full = np.arange(unique[0], unique[-1] + step, step)
    return full if len(full) <= 2 * len(unique) else unique


def read_segy_layout(path: Path, iline_byte: int = 189, xline_byte: int = 193) -> SegyLayout:
    """Place the traces of ``path`` on a grid by their inline/crossline header numbers.

    Raises:
        SaltsegError: not SEG-Y or truncated, header bytes that are no trace header field, or
            numbers that do not form a grid (several traces in one cell, a mostly empty grid).
    """
    fields = {int(v) for v in segyio.TraceField.enums()}
    for name, byte in (("--iline-byte", iline_byte), ("--xline-byte", xline_byte)):
        if byte not in fields:
            raise SaltsegError(
                f"{name} {byte} is not the first byte of a trace header field (e.g. 189, 193, 9)"
            )
    with _open(path) as f:
        n_traces, n_samples = f.tracecount, len(f.samples)
        if n_traces == 0 or n_samples == 0:
            raise SaltsegError(f"{path}: {n_traces} traces of {n_samples} samples; nothing to read")
        il = np.asarray(f.attributes(iline_byte)[:], dtype=np.int64)
        xl = np.asarray(f.attributes(xline_byte)[:], dtype=np.int64)
    bytes_ = f"bytes {iline_byte}/{xline_byte}"
    flat_axis = len(np.unique(il)) == 1 or len(np.unique(xl)) == 1
    if np.unique(np.stack([il, xl]), axis=1).shape[1] < n_traces:
        if not flat_axis:
            raise SaltsegError(
                f"{path}: several traces share an inline/crossline pair at header {bytes_}; "
                "check --iline-byte/--xline-byte"
            )
        live = np.ones((1, n_traces), dtype=bool)
        return SegyLayout(
            (1, n_traces, n_samples),
            live,
            np.arange(n_traces),
            iline_byte,
            xline_byte,
            "2d, file order",
            None,
            None,
            segy_endian(path),
        )
    inlines, xlines = _axis_numbers(il), _axis_numbers(xl)
    rows, cols = np.searchsorted(inlines, il), np.searchsorted(xlines, xl)
    cells = rows * len(xlines) + cols
    if n_traces < _MIN_FILL * len(inlines) * len(xlines):
        raise SaltsegError(
            f"{path}: {n_traces} traces on a grid of {len(inlines)} inlines x {len(xlines)} "
            f"crosslines (header {bytes_}) is mostly empty; check --iline-byte/--xline-byte"
        )
    geometry = "2d" if flat_axis else "3d"
    if len(inlines) > 1 and len(xlines) == 1:  # a line along the inline numbers
        inlines, xlines = xlines, inlines
    live = np.zeros(len(inlines) * len(xlines), dtype=bool)
    live[cells] = True
    shape = (len(inlines), len(xlines), n_samples)
    return SegyLayout(
        shape,
        live.reshape(shape[:2]),
        cells,
        iline_byte,
        xline_byte,
        geometry,
        inlines,
        xlines,
        segy_endian(path),
    )


def _runs(traces: np.ndarray) -> Iterator[tuple[int, int]]:
    """Contiguous ``(start, stop)`` runs of sorted trace numbers, at most ``_CHUNK`` long."""
    if len(traces) == 0:
        return
    breaks = np.flatnonzero(np.diff(traces) != 1) + 1
    for run in np.split(traces, breaks):
        for a in range(0, len(run), _CHUNK):
            yield int(run[a]), int(run[min(a + _CHUNK, len(run)) - 1]) + 1


def read_segy_traces(
    path: Path, layout: SegyLayout, shape: tuple[int, int, int], axis: int, start: int, stop: int
) -> np.ndarray:
    """Amplitudes of lines ``start:stop`` along ``axis`` (see :meth:`Volume.read`), holes zero."""
    n_lines, n_traces, n_samples = shape
    trace_of_cell = np.full(n_lines * n_traces, -1, dtype=np.int64)
    trace_of_cell[layout.cell_of_trace] = np.arange(len(layout.cell_of_trace))
    grid = trace_of_cell.reshape(n_lines, n_traces)
    if axis == 0:
        wanted, window = grid[start:stop], slice(None)
    elif axis == 1:
        wanted, window = grid[:, start:stop].T, slice(None)
    else:
        wanted, window = grid, slice(start, stop)
    out = np.zeros((*wanted.shape, len(range(n_samples)[window])), dtype=np.float32)
    flat_out = out.reshape(-1, out.shape[-1])
    positions = np.flatnonzero(wanted.ravel() >= 0)
    order = np.argsort(wanted.ravel()[positions])
    positions, traces = positions[order], wanted.ravel()[positions][order]
    with _open(path) as f:
        done = 0
        for a, b in _runs(traces):
            flat_out[positions[done : done + b - a]] = f.trace.raw[a:b].reshape(b - a, -1)[
                :, window
            ]
            done += b - a
    return np.moveaxis(out, -1, 0) if axis == 2 else out


def write_segy(
    src: Path, layout: SegyLayout, dst: Path, values: Callable[[np.ndarray], np.ndarray]
) -> None:
    """Write ``dst`` with the headers of ``src`` and, per trace, ``values(cells)`` as IEEE floats.

    Args:
        src: The input SEG-Y file.
        layout: Its grid.
        dst: The file to write (a temporary name; the caller renames it).
        values: Flat grid cells ``(n,)`` -> float32 traces ``(n, samples)``.
    """
    with _open(src) as f:
        spec = segyio.spec()
        spec.format, spec.samples, spec.tracecount = 5, f.samples, f.tracecount
        spec.ext_headers, spec.endian = f.ext_headers, segy_endian(src)
        with segyio.create(str(dst), spec) as out:
            for i in range(1 + f.ext_headers):
                out.text[i] = f.text[i]
            out.bin = f.bin
            out.bin.update({segyio.BinField.Format: 5})
            for a in range(0, f.tracecount, _CHUNK):
                b = min(a + _CHUNK, f.tracecount)
                traces = np.asarray(values(layout.cell_of_trace[a:b]), dtype=np.float32)
                for i in range(a, b):
                    out.header[i] = f.header[i]
                    out.trace[i] = traces[i - a]
