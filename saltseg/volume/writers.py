"""Outputs of ``predict-volume``: the formats, their file names, and writing each of them.

The output folder itself (what may be replaced, staging, publishing) is
:class:`saltseg.outputs.OutputFolder`. The ``.npy`` outputs are written a slab at a time with
explicit file writes (never a memory map, whose pages would count in the process).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from saltseg.errors import SaltsegError
from saltseg.volume.blocks import write_block

SUMMARY = "predict-volume.json"
OUTPUTS = {
    "npy": ("probabilities.npy", "mask.npy"),
    "segy": ("probabilities.sgy", "mask.sgy"),
    "png": ("section.png", "probabilities.png"),
}
FORMATS = tuple(OUTPUTS)


def resolve_formats(formats: str | None, segy: bool, is_2d: bool) -> tuple[str, ...]:
    """Output formats: given (comma-separated) or all that apply (SEG-Y for SEG-Y, PNG for 2D)."""
    if formats is None:
        chosen = ["npy"] + ["segy"] * segy + ["png"] * is_2d
        return tuple(chosen)
    chosen = [f.strip().lower() for f in formats.split(",") if f.strip()]
    for name in chosen:
        if name not in FORMATS:
            raise SaltsegError(f"unknown output format {name!r}; valid: {list(FORMATS)}")
    if "segy" in chosen and not segy:
        raise SaltsegError("SEG-Y output needs a SEG-Y input (its headers are copied)")
    if "png" in chosen and not is_2d:
        raise SaltsegError("PNG output is for 2D sections only")
    if not chosen:
        raise SaltsegError(f"no output format given; valid: {list(FORMATS)}")
    return tuple(dict.fromkeys(chosen))


def write_npy(
    prob_path: Path,
    mask_path: Path,
    shape: tuple[int, ...],
    slabs: list[tuple[int, int]],
    read: Callable[[int, int], np.ndarray],
    threshold: float,
) -> None:
    """Write probabilities (float32, NaN in holes) and the mask (uint8) as ``.npy``, by slabs.

    Args:
        prob_path: Probabilities file.
        mask_path: Mask file.
        shape: Output array shape.
        slabs: ``(start, stop)`` ranges along the first axis.
        read: ``(start, stop)`` -> probabilities of those rows of the output.
        threshold: Salt where the probability is above it.
    """
    files = [(prob_path, np.float32), (mask_path, np.uint8)]
    offsets = [_create_npy(path, dtype, shape) for path, dtype in files]
    fds = [os.open(path, os.O_WRONLY) for path, _ in files]
    try:
        for start, stop in slabs:
            probs = np.asarray(read(start, stop), np.float32)
            mask = (probs > threshold).astype(np.uint8)
            for fd, offset, values in zip(fds, offsets, (probs, mask), strict=True):
                write_block(fd, offset, tuple(shape), 0, start, values)
    finally:
        for fd in fds:
            os.close(fd)


def _create_npy(path: Path, dtype: type, shape: tuple[int, ...]) -> int:
    """Write the ``.npy`` header of a C-ordered array, size the file; the data's byte offset."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": tuple(int(n) for n in shape),
    }
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        offset = handle.tell()
        handle.truncate(offset + int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return offset


def write_pngs(
    section_path: Path, prob_path: Path, image: np.ndarray, probs: np.ndarray, threshold: float
) -> None:
    """The section with salt overlaid in red, and the probability map (both PNG).

    Args:
        section_path: Overlay PNG.
        prob_path: Probability map PNG.
        image: The scaled section ``(rows, cols)`` in [0, 1].
        probs: Its probabilities.
        threshold: Salt where the probability is above it.
    """
    from matplotlib import colormaps
    from PIL import Image

    gray = np.repeat((image * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    salt = probs > threshold
    overlay = gray.astype(np.float32)
    overlay[salt] = 0.55 * overlay[salt] + 0.45 * np.array([255, 40, 40], np.float32)
    Image.fromarray(overlay.round().astype(np.uint8)).save(section_path, format="PNG")
    colored = colormaps["magma"](np.nan_to_num(probs, nan=0.0))[..., :3]
    Image.fromarray((colored * 255).round().astype(np.uint8)).save(prob_path, format="PNG")
