"""Sliding windows over sections of any size, blended so that no seam shows.

A section ``(H, W)`` is reflect-padded up to one window where it is smaller than a window (and
by an optional margin on every side), cut into windows of ``size x size`` with a stride of
``size * (1 - overlap)`` (the last window of each row and column is shifted to end at the edge),
and each window's prediction is added with a weight map; the sum divided by the sum of weights is
the result, cropped back to ``(H, W)``. Weight maps: ``"gaussian"`` (sigma ``size / 8``, as
MONAI's ``sliding_window_inference``), ``"pyramid"`` (distance to the window's border, as
pytorch-toolbelt's ``TileMerger``) or ``"flat"``; all are strictly positive, so every pixel has a
well-defined mean. Windows of several sections of one shape are batched together.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from saltseg.errors import SaltsegError

WINDOW = 101
BLENDS = ("gaussian", "pyramid", "flat")
_MIN_WEIGHT = 1e-4

WindowPredictor = Callable[[np.ndarray], np.ndarray]
"""Maps windows ``(N, size, size)`` float32 in [0, 1] to probabilities of the same shape."""


def window_weights(size: int = WINDOW, blend: str = "gaussian") -> np.ndarray:
    """The weight map ``(size, size)`` float32 of a window, largest (1) at the centre.

    Raises:
        SaltsegError: an unknown blend name.
    """
    centre = (size - 1) / 2
    pos = np.arange(size, dtype=np.float64)
    if blend == "gaussian":
        ramp = np.exp(-0.5 * ((pos - centre) / (size / 8)) ** 2)
        weights = np.outer(ramp, ramp)
    elif blend == "pyramid":
        ramp = np.minimum(pos + 1, size - pos)
        weights = np.minimum.outer(ramp, ramp) / ramp.max()
    elif blend == "flat":
        weights = np.ones((size, size))
    else:
        raise SaltsegError(f"unknown blending {blend!r}; valid: {list(BLENDS)}")
    return np.maximum(weights, _MIN_WEIGHT).astype(np.float32)


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Window offsets along an axis of ``length >= size``: every ``stride``, the last at the end."""
    last = length - size
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def stride_of(size: int, overlap: float) -> int:
    """The window step in pixels for an overlap fraction in [0, 1)."""
    if not 0 <= overlap < 1:
        raise SaltsegError(f"overlap must be in [0, 1), got {overlap}")
    return max(1, round(size * (1 - overlap)))


def _padding(length: int, size: int, margin: int) -> tuple[int, int]:
    extra = max(0, size - (length + 2 * margin))
    return margin, margin + extra


def count_windows(shape: tuple[int, int], size: int, overlap: float, margin: int = 0) -> int:
    """Number of windows :func:`predict_sections` cuts from one section of ``shape``."""
    stride = stride_of(size, overlap)
    n = 1
    for length in shape:
        before, after = _padding(length, size, margin)
        n *= len(window_starts(length + before + after, size, stride))
    return n


def predict_sections(
    sections: np.ndarray,
    predict: WindowPredictor,
    size: int = WINDOW,
    overlap: float = 0.5,
    blend: str = "gaussian",
    margin: int = 0,
    chunk: int = 64,
    on_windows: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Blended window predictions over sections of one shape.

    Args:
        sections: float32 ``(K, H, W)`` in [0, 1]; rows are depth or time.
        predict: Windows -> probabilities (see :data:`WindowPredictor`).
        size: Window side in pixels.
        overlap: Fraction of a window shared with the next one, in [0, 1).
        blend: ``"gaussian"``, ``"pyramid"`` or ``"flat"``.
        margin: Extra reflect padding on each side, so that edge pixels sit inside windows
            (the models' own tile padding already gives them reflected context).
        chunk: Windows per call of ``predict``.
        on_windows: Called with the number of windows after each call (a progress bar).

    Returns:
        float32 ``(K, H, W)``: per pixel, the weighted mean of the windows covering it.

    Raises:
        SaltsegError: a section with a dimension under 2 samples, or bad settings.
    """
    if sections.ndim != 3:
        raise SaltsegError(f"sections must be (K, H, W), got shape {sections.shape}")
    k, height, width = sections.shape
    if height < 2 or width < 2:
        raise SaltsegError(
            f"a section of {height} x {width} samples cannot be predicted: "
            "need at least 2 samples in each dimension"
        )
    stride = stride_of(size, overlap)
    if margin < 0:
        raise SaltsegError(f"margin must be at least 0, got {margin}")
    weights = window_weights(size, blend)
    pad_h, pad_w = _padding(height, size, margin), _padding(width, size, margin)
    padded = np.pad(sections.astype(np.float32, copy=False), ((0, 0), pad_h, pad_w), "reflect")
    rows = window_starts(padded.shape[1], size, stride)
    cols = window_starts(padded.shape[2], size, stride)
    norm = np.zeros(padded.shape[1:], dtype=np.float32)
    for r in rows:
        for c in cols:
            norm[r : r + size, c : c + size] += weights
    acc = np.zeros(padded.shape, dtype=np.float32)
    places = [(i, r, c) for i in range(k) for r in rows for c in cols]
    for start in range(0, len(places), chunk):
        batch = places[start : start + chunk]
        windows = np.stack([padded[i, r : r + size, c : c + size] for i, r, c in batch])
        probs = np.asarray(predict(windows), dtype=np.float32)
        if probs.shape != windows.shape:
            raise SaltsegError(f"the model returned shape {probs.shape} for {windows.shape}")
        for (i, r, c), prob in zip(batch, probs, strict=True):
            acc[i, r : r + size, c : c + size] += weights * prob
        if on_windows is not None:
            on_windows(len(batch))
    acc /= norm
    return acc[:, pad_h[0] : pad_h[0] + height, pad_w[0] : pad_w[0] + width]
