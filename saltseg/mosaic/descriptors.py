"""Edge descriptors: each tile's border lines and their one-pixel extrapolation, normalised.

Across a seam between tile A and its right neighbour B, the columns run ``... n e | f g ...``
(``e`` A's last column, ``f`` B's first). A predicts B's first column by extrapolating one pixel
outward, ``2e - n``; B predicts A's last column by ``2f - g``. A's outgoing descriptor is
``[e, 2e - n]`` and B's incoming one ``[2f - g, f]``, both in seam order, so the euclidean distance
between them measures the two predictions at once. Each half is normalised on its own (zero mean,
unit norm), because real tiles are contrast-stretched one by one; the whole vector has unit norm.
The linear trend of each half is removed first: a smooth ramp (a row along gently dipping layers)
fits countless other ramps and says little about which tile comes next.

Rows play the same part for the tile below: ``"bottom"`` is outgoing, ``"top"`` incoming.
"""

from __future__ import annotations

import numpy as np

from saltseg.errors import SaltsegError

SIDES = ("right", "left", "bottom", "top")
OUTGOING = ("right", "bottom")


def _lines(images: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """The border line of ``side`` and the line next to it, each ``(N, length)`` float32."""
    if side == "right":
        return images[:, :, -1], images[:, :, -2]
    if side == "left":
        return images[:, :, 0], images[:, :, 1]
    if side == "bottom":
        return images[:, -1, :], images[:, -2, :]
    if side == "top":
        return images[:, 0, :], images[:, 1, :]
    raise SaltsegError(f"unknown side {side!r}; expected one of {list(SIDES)}")


def _check(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3 or min(images.shape[1:]) < 2:
        raise SaltsegError(f"need tiles as an (N, H, W) array with H, W >= 2, got {images.shape}")
    return images.astype(np.float32, copy=False)


def _unit(lines: np.ndarray) -> np.ndarray:
    """Lines without their mean and linear trend, scaled to unit norm (zeros stay zeros)."""
    centred = lines - lines.mean(axis=1, keepdims=True)
    ramp = np.linspace(-1, 1, lines.shape[1], dtype=np.float32)
    ramp /= np.linalg.norm(ramp)
    residual = centred - (centred @ ramp)[:, None] * ramp[None, :]
    norm = np.linalg.norm(residual, axis=1, keepdims=True)
    return residual / np.where(norm > 1e-6, norm, 1.0)


def edge_descriptors(images: np.ndarray, side: str) -> np.ndarray:
    """Unit-norm descriptors of one side of every tile.

    Args:
        images: ``(N, H, W)`` tiles.
        side: ``"right"`` or ``"bottom"`` (outgoing: ``[edge, extrapolation]``), ``"left"`` or
            ``"top"`` (incoming: ``[extrapolation, edge]``).

    Returns:
        float32 ``(N, 2 * L)`` with ``L`` the length of the side; an outgoing descriptor of A is
        close to the incoming descriptor of B when B continues A across that side. A constant
        edge gives zeros (see :func:`edge_std`).
    """
    edge, inner = _lines(_check(images), side)
    outside = 2 * edge - inner
    halves = (edge, outside) if side in OUTGOING else (outside, edge)
    return (np.concatenate([_unit(h) for h in halves], axis=1) / np.sqrt(2)).astype(np.float32)


def edge_std(images: np.ndarray, side: str) -> np.ndarray:
    """Standard deviation of each tile's border line on ``side`` about its linear trend, ``(N,)``.

    0 for a constant edge and for a pure ramp, which the descriptors reduce to nothing.
    """
    edge, _ = _lines(_check(images), side)
    ramp = np.linspace(-1, 1, edge.shape[1], dtype=np.float32)
    ramp /= np.linalg.norm(ramp)
    centred = edge - edge.mean(axis=1, keepdims=True)
    return (centred - (centred @ ramp)[:, None] * ramp[None, :]).std(axis=1)


def edge_flatness(images: np.ndarray, side: str) -> np.ndarray:
    """Share of each border line's pixels that hold its most common 8-bit level, ``(N,)``.

    Near 1 for an edge that runs mostly through a blank (zero-filled) area.
    """
    edge, _ = _lines(_check(images), side)
    levels = np.clip(np.rint(edge * 255), 0, 255).astype(np.int64)
    counts = np.bincount(
        (levels + 256 * np.arange(len(edge))[:, None]).ravel(), minlength=256 * len(edge)
    )
    return counts.reshape(len(edge), 256).max(axis=1) / max(edge.shape[1], 1)


def degenerate_edges(
    images: np.ndarray, side: str, min_std: float, max_flatness: float
) -> np.ndarray:
    """Edges that must never link: nearly constant, or mostly one grey level, ``(N,)`` bool."""
    return (edge_std(images, side) < max(min_std, 1e-6)) | (
        edge_flatness(images, side) > max_flatness
    )
