"""Kaggle run-length encoding: column-major pixel order, 1-based starts, ``start length`` pairs."""

from __future__ import annotations

import numpy as np

from saltseg.errors import SaltsegError

TILE = 101
"""Side of a Kaggle tile, in pixels."""
TILE_SHAPE = (TILE, TILE)


def rle_encode(mask: np.ndarray) -> str:
    """Encode a mask as Kaggle RLE.

    Args:
        mask: 2-D array, truthy where salt.

    Returns:
        Space-separated ``start length`` pairs (1-based, column-major); ``""`` for an empty mask.
    """
    if mask.ndim != 2:
        raise SaltsegError(f"rle_encode needs a 2-D mask, got shape {mask.shape}")
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    pairs = np.empty(2 * len(starts), dtype=np.int64)
    pairs[0::2] = starts + 1
    pairs[1::2] = ends - starts
    return " ".join(map(str, pairs.tolist()))


def rle_decode(rle: str | float | None, shape: tuple[int, int] = TILE_SHAPE) -> np.ndarray:
    """Decode Kaggle RLE into a boolean mask.

    Args:
        rle: The encoded runs; ``""``, ``None`` or NaN (pandas' empty cell) give an empty mask.
        shape: ``(height, width)`` of the mask.

    Returns:
        Boolean array of ``shape``.

    Raises:
        SaltsegError: odd number of values, non-integers, non-positive starts or lengths, runs
            beyond the image, or runs that overlap or are not sorted.
    """
    height, width = shape
    size = height * width
    flat = np.zeros(size, dtype=bool)
    if rle is None or (isinstance(rle, float) and np.isnan(rle)):
        return flat.reshape(shape, order="F")
    if not isinstance(rle, str):
        raise SaltsegError(f"RLE must be a string, got {type(rle).__name__}")
    tokens = rle.split()
    if not tokens:
        return flat.reshape(shape, order="F")
    if len(tokens) % 2:
        raise SaltsegError(f"RLE has an odd number of values ({len(tokens)})")
    try:
        values = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("+").isdigit())
        raise SaltsegError(f"RLE value {bad!r} is not an integer") from None
    starts, lengths = values[0::2], values[1::2]
    if (starts < 1).any():
        raise SaltsegError(f"RLE start {int(starts[starts < 1][0])} is below 1")
    if (lengths < 1).any():
        raise SaltsegError(f"RLE run length {int(lengths[lengths < 1][0])} is below 1")
    ends = starts + lengths - 1
    if (ends > size).any():
        i = int(np.argmax(ends > size))
        raise SaltsegError(
            f"RLE run {int(starts[i])} {int(lengths[i])} goes beyond the {height}x{width} image"
        )
    if len(starts) > 1:
        if (np.diff(starts) <= 0).any():
            raise SaltsegError("RLE runs are not sorted by start")
        if (starts[1:] <= ends[:-1]).any():
            i = int(np.argmax(starts[1:] <= ends[:-1]))
            raise SaltsegError(f"RLE runs overlap at start {int(starts[i + 1])}")
    index = np.repeat(starts - 1, lengths) + (
        np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    )
    flat[index] = True
    return flat.reshape(shape, order="F")
