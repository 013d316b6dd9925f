"""The TGS competition metric, vectorised over a batch of masks.

Per image, the IoU of prediction and truth is compared with the thresholds 0.50, 0.55, ..., 0.95;
the precision at a threshold is 1 where IoU > t, else 0. An empty truth scores 1 only for an empty
prediction (at every threshold). The image score is the mean over thresholds, and the competition
score the mean over images.

Comparisons are done in integers (``20 * intersection > k * union`` for ``t = k / 20``), so an IoU
of exactly a threshold is never a hit, with no floating-point doubt.
"""

from __future__ import annotations

import numpy as np

from saltseg.errors import SaltsegError

THRESHOLD_STEPS = np.arange(10, 20)  # t = k / 20: 0.50, 0.55, ..., 0.95
THRESHOLDS = THRESHOLD_STEPS / 20


def _as_batch(masks: np.ndarray, name: str) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise SaltsegError(f"{name} must be (N, H, W) masks, got shape {masks.shape}")
    return masks.astype(bool, copy=False).reshape(len(masks), -1)


def _counts(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersection and union pixel counts per image."""
    t, p = _as_batch(truth, "truth"), _as_batch(pred, "pred")
    if t.shape != p.shape:
        raise SaltsegError(f"truth and pred shapes differ: {t.shape} vs {p.shape}")
    # Population counts of bit-packed rows are several times faster than summing bools.
    t_bits, p_bits = np.packbits(t, axis=1), np.packbits(p, axis=1)
    inter = np.bitwise_count(t_bits & p_bits).sum(axis=1, dtype=np.int64)
    union = np.bitwise_count(t_bits | p_bits).sum(axis=1, dtype=np.int64)
    return inter, union


def iou(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU per image, ``(N,)``; 1.0 where both masks are empty.

    Args:
        truth: bool ``(N, H, W)`` (or ``(H, W)``, or ``(N, 1, H, W)``).
        pred: bool, same shape.
    """
    inter, union = _counts(truth, pred)
    out = np.ones(len(inter), dtype=np.float64)
    nonzero = union > 0
    out[nonzero] = inter[nonzero] / union[nonzero]
    return out


def image_scores(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Competition score of each image, ``(N,)``: the mean over thresholds of IoU > t."""
    inter, union = _counts(truth, pred)
    hits = 20 * inter[:, None] > THRESHOLD_STEPS[None, :] * union[:, None]
    scores = hits.mean(axis=1)
    scores[union == 0] = 1.0  # empty truth and empty prediction
    return scores


def competition_metric(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean over images of :func:`image_scores` (the Kaggle leaderboard score)."""
    return float(image_scores(truth, pred).mean())
