"""Seismic inputs as a grid of traces: SEG-Y lines and cubes, ``.npy`` arrays, images.

Every input becomes a :class:`Volume` of shape ``(lines, traces, samples)``: a 3D cube is
``(inlines, crosslines, samples)``, a 2D line or image ``(1, traces, samples)``. ``live`` marks the
grid cells that hold a trace; the others are holes (missing or dead traces of an irregular
SEG-Y file). Slabs of lines are read on demand, so a cube larger than memory is never loaded:
SEG-Y traces through segyio, ``.npy`` cubes with explicit file reads of just the slab (never a
memory map, whose pages would count in the process), 2D ``.npy`` files and images (always small
enough) from memory.

Array conventions: a 2D ``.npy`` or image is a picture, rows = depth or time, columns = traces;
a 3D ``.npy`` is ``(inline, crossline, sample)`` as ``segyio.tools.cube`` returns it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.errors import SaltsegError
from saltseg.volume.blocks import read_block
from saltseg.volume.segy import SegyLayout, read_segy_layout, read_segy_traces

SEGY_SUFFIXES = (".sgy", ".segy")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass
class Volume:
    """A seismic input on a regular grid, read a slab of lines at a time.

    Attributes:
        shape: ``(lines, traces, samples)``.
        live: bool ``(lines, traces)``: the cells that hold a trace.
        kind: ``"segy"``, ``"npy"``, ``"image"`` or ``"array"``.
        path: The file, None for an in-memory array.
        segy: Where each SEG-Y trace sits on the grid (SEG-Y inputs only).
        integer_range: The value range of an integer image (its natural clip values), else None.
    """

    shape: tuple[int, int, int]
    live: np.ndarray
    kind: str
    path: Path | None = None
    segy: SegyLayout | None = None
    integer_range: tuple[float, float] | None = None
    array: np.ndarray | None = field(default=None, repr=False)
    npy: tuple[int, str, tuple[int, ...], bool] | None = None

    @property
    def is_2d(self) -> bool:
        """One line (a 2D section), as opposed to a cube."""
        return self.shape[0] == 1

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts about the input."""
        info: dict[str, Any] = {
            "path": str(self.path) if self.path else None,
            "format": self.kind,
            "dimensions": 2 if self.is_2d else 3,
            "shape": list(self.shape),
            "traces": int(self.live.sum()),
            "holes": int((~self.live).sum()),
        }
        if self.segy is not None:
            info.update(self.segy.describe())
        return info

    def read(self, axis: int, start: int, stop: int) -> np.ndarray:
        """Raw amplitudes (float32) of lines ``start:stop`` along ``axis``, holes zero.

        Returns:
            axis 0: ``(k, traces, samples)``; axis 1: ``(k, lines, samples)``;
            axis 2 (depth slices): ``(k, lines, traces)``.
        """
        if self.segy is not None:
            assert self.path is not None
            return read_segy_traces(self.path, self.segy, self.shape, axis, start, stop)
        if self.array is not None:
            index: list[slice] = [slice(None)] * 3
            index[axis] = slice(start, stop)
            slab = np.array(self.array[tuple(index)], dtype=np.float32)
        else:
            assert self.npy is not None and self.path is not None
            offset, dtype, shape, fortran = self.npy
            with open(self.path, "rb") as handle:
                block = read_block(
                    handle.fileno(), offset, shape, dtype, axis, start, stop, fortran
                )
            slab = block.astype(np.float32)
        return np.moveaxis(slab, axis, 0)


def _check_array(shape: tuple[int, ...], dtype: np.dtype) -> None:
    if len(shape) not in (2, 3):
        raise SaltsegError(f"expected a 2D section or a 3D cube, got an array of shape {shape}")
    if min(shape) < 1:
        raise SaltsegError(f"empty array of shape {shape}")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise SaltsegError(f"expected real numbers, got dtype {dtype}")


def _from_array(array: np.ndarray, kind: str, path: Path | None) -> Volume:
    _check_array(array.shape, array.dtype)
    cube = np.ascontiguousarray(array.T[None]) if array.ndim == 2 else array
    live = np.ones(cube.shape[:2], dtype=bool)
    return Volume(tuple(cube.shape), live, kind, path, array=cube)


def volume_from_array(array: np.ndarray) -> Volume:
    """A :class:`Volume` of an in-memory section ``(depth, traces)`` or cube ``(il, xl, t)``."""
    return _from_array(np.asarray(array), "array", None)


def _open_npy(path: Path) -> Volume:
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            offset = handle.tell()
    except (ValueError, OSError) as err:
        raise SaltsegError(f"{path}: not a readable .npy file ({err})") from None
    if dtype.hasobject:
        raise SaltsegError(f"{path}: holds Python objects; only numeric arrays are read")
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < expected:
        raise SaltsegError(f"{path}: truncated ({path.stat().st_size} bytes, expected {expected})")
    if len(shape) != 3:
        return _from_array(np.load(path, allow_pickle=False), "npy", path)
    _check_array(shape, dtype)
    live = np.ones(shape[:2], dtype=bool)
    return Volume(tuple(shape), live, "npy", path, npy=(offset, dtype.str, tuple(shape), fortran))


def _open_image(path: Path) -> Volume:
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "I;16", "I", "F"):
                image = image.convert("L")
            array = np.array(image)
    except (OSError, Image.DecompressionBombError) as err:
        raise SaltsegError(f"{path}: not a readable image ({err})") from None
    volume = _from_array(array, "image", path)
    if array.dtype in (np.uint8, np.uint16):
        volume.integer_range = (0.0, float(np.iinfo(array.dtype).max))
    return volume


def open_volume(path: str | Path, iline_byte: int = 189, xline_byte: int = 193) -> Volume:
    """Open a SEG-Y, ``.npy`` or image file as a :class:`Volume` (nothing is loaded yet).

    Args:
        path: The file.
        iline_byte: Trace header byte of the inline number (SEG-Y).
        xline_byte: Trace header byte of the crossline number (SEG-Y).

    Raises:
        SaltsegError: a missing or unreadable file, an unknown suffix, bad header bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise SaltsegError(f"input {path} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix in SEGY_SUFFIXES:
        layout = read_segy_layout(path, iline_byte, xline_byte)
        return Volume(layout.shape, layout.live, "segy", path, segy=layout)
    if suffix == ".npy":
        return _open_npy(path)
    if suffix in IMAGE_SUFFIXES:
        return _open_image(path)
    known = [*SEGY_SUFFIXES, ".npy", *IMAGE_SUFFIXES]
    raise SaltsegError(f"{path}: unknown input format {suffix!r}; expected one of {known}")
