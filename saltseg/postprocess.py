"""From probabilities to masks, with settings chosen on out-of-fold predictions only.

The rules, in order: a tile whose image is constant (zero variance) is empty; pixels above
``threshold`` are salt; a mask with fewer than ``min_area`` pixels is emptied; a tile whose
highest salt probability is below ``peak_threshold`` is emptied (a tile where the model is nowhere
sure of salt); with a classifier, a tile whose salt probability is below ``cls_threshold`` is
emptied. :func:`tune_postprocess` grid-searches the four numbers to maximise the competition
metric; it scores each threshold once and then derives every (min area, peak gate, classifier
gate) combination from the per-image scores, so a full grid costs a few metric calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.errors import SaltsegError
from saltseg.io import write_json
from saltseg.metrics import competition_metric, image_scores

THRESHOLDS = tuple(np.round(np.arange(0.2, 0.801, 0.02), 2).tolist())
MIN_AREAS = (0, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300)
CLS_THRESHOLDS = (0.0, *np.round(np.arange(0.05, 0.951, 0.05), 2).tolist())
PEAK_THRESHOLDS = (0.0, *np.round(np.arange(0.55, 0.951, 0.05), 2).tolist(), 0.97, 0.99)
DEFAULT_THRESHOLD = 0.5
"""The pixel threshold of plain thresholding, before any tuning."""


@dataclass
class PostProcess:
    """Settings that turn probabilities into masks.

    Attributes:
        threshold: Pixel probability above which a pixel is salt.
        min_area: Masks with fewer salt pixels are emptied.
        peak_threshold: Tiles whose highest salt probability is below it are emptied; None (or
            0) for no gate.
        cls_threshold: Tiles whose classifier salt probability is below it are emptied;
            None (or 0) for no gate.
        empty_constant: Predict constant (zero-variance) tiles empty.
        info: Where the settings came from (scores, runs), saved alongside.
    """

    threshold: float = DEFAULT_THRESHOLD
    min_area: int = 0
    cls_threshold: float | None = None
    peak_threshold: float | None = None
    empty_constant: bool = True
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def number(value: Any) -> bool:
            return isinstance(value, int | float) and not isinstance(value, bool)

        if not number(self.threshold) or not 0 < self.threshold < 1:
            raise SaltsegError(f"threshold must be a number in (0, 1), got {self.threshold!r}")
        if not isinstance(self.min_area, int) or isinstance(self.min_area, bool):
            raise SaltsegError(f"min_area must be a whole number, got {self.min_area!r}")
        if self.min_area < 0:
            raise SaltsegError(f"min_area must be at least 0, got {self.min_area}")
        for name in ("cls_threshold", "peak_threshold"):
            gate = getattr(self, name)
            if gate is not None and (not number(gate) or not 0 <= gate < 1):
                raise SaltsegError(f"{name} must be null or a number in [0, 1), got {gate!r}")
        if not isinstance(self.empty_constant, bool):
            raise SaltsegError(f"empty_constant must be true or false, got {self.empty_constant!r}")
        if not isinstance(self.info, dict):
            raise SaltsegError(f"info must be a mapping, got {self.info!r}")

    def apply(
        self, probs: np.ndarray, images: np.ndarray | None = None, cls: np.ndarray | None = None
    ) -> np.ndarray:
        """Masks ``(N, H, W)`` bool from probabilities ``(N, H, W)``.

        Args:
            probs: Salt probabilities.
            images: The tiles, for the constant-tile rule (skipped when None).
            cls: Classifier salt probabilities ``(N,)``; needed when ``cls_threshold`` is set.
        """
        masks = probs > self.threshold
        empty = masks.reshape(len(masks), -1).sum(axis=1) < self.min_area
        if self.empty_constant and images is not None:
            empty |= constant_tiles(images)
        if self.peak_threshold:
            empty |= probs.reshape(len(probs), -1).max(axis=1) < self.peak_threshold
        if self.cls_threshold:
            if cls is None:
                raise SaltsegError(
                    "the post-processing gates on the classifier, but the model has no classifier"
                )
            empty |= np.asarray(cls) < self.cls_threshold
        masks[empty] = False
        return masks

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return asdict(self)

    def describe(self) -> str:
        """One line: ``threshold 0.46, min area 20, peak gate 0.8, classifier gate 0.3``."""
        peak = f"{self.peak_threshold:g}" if self.peak_threshold else "off"
        gate = f"{self.cls_threshold:g}" if self.cls_threshold else "off"
        return (
            f"threshold {self.threshold:g}, min area {self.min_area}, peak gate {peak}, "
            f"classifier gate {gate}"
        )


def constant_tiles(images: np.ndarray) -> np.ndarray:
    """True for each tile ``(N, H, W)`` whose pixels all have the same value."""
    flat = images.reshape(len(images), -1)
    return (flat == flat[:, :1]).all(axis=1)


def save_postprocess(pp: PostProcess, path: str | Path) -> None:
    """Write the settings as JSON, atomically."""
    write_json(pp.to_json(), path)


def load_postprocess(path: str | Path) -> PostProcess:
    """Read and check settings written by :func:`save_postprocess`.

    Raises:
        SaltsegError: a missing or unreadable file, unknown keys, wrong types, values out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise SaltsegError(f"post-processing file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SaltsegError(f"{path}: not a post-processing file ({err})") from None
    if not isinstance(data, dict):
        raise SaltsegError(f"{path}: not a post-processing file (expected a JSON object)")
    known = {f.name for f in fields(PostProcess)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SaltsegError(f"{path}: unknown key {unknown[0]!r}; expected {sorted(known)}")
    try:
        return PostProcess(**data)
    except SaltsegError as err:
        raise SaltsegError(f"{path}: {err}") from None


def tune_postprocess(
    truth: np.ndarray,
    probs: np.ndarray,
    images: np.ndarray | None = None,
    cls: np.ndarray | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
    min_areas: Sequence[int] = MIN_AREAS,
    cls_thresholds: Sequence[float] = CLS_THRESHOLDS,
    base_threshold: float = DEFAULT_THRESHOLD,
    peak_thresholds: Sequence[float] = PEAK_THRESHOLDS,
) -> PostProcess:
    """Grid-search threshold, minimum area, peak gate and classifier gate on out-of-fold
    predictions.

    Ties go to the threshold nearest ``base_threshold``, then the smallest area, then the
    weakest classifier gate, then the weakest peak gate.

    Args:
        truth: bool ``(N, H, W)`` masks.
        probs: Out-of-fold salt probabilities ``(N, H, W)``.
        images: The tiles (constant tiles are always predicted empty); None to skip that rule.
        cls: Classifier probabilities ``(N,)``; the gate is searched only when given.
        thresholds: Pixel thresholds to try.
        min_areas: Minimum areas to try.
        cls_thresholds: Classifier gates to try (0 means no gate).
        base_threshold: The threshold of the score "before" (plain thresholding).
        peak_thresholds: Peak gates to try (0 means no gate).

    Returns:
        The best settings; ``info`` holds ``oof_score_before`` (plain ``base_threshold``),
        ``oof_score_after`` and ``n_tiles``.
    """
    truth = np.asarray(truth, dtype=bool)
    if truth.shape != probs.shape:
        raise SaltsegError(f"truth {truth.shape} and probabilities {probs.shape} differ in shape")
    n = len(truth)
    empty_score = (~truth.reshape(n, -1).any(axis=1)).astype(np.float64)
    forced = constant_tiles(images) if images is not None else np.zeros(n, bool)
    gates = np.asarray(cls_thresholds if cls is not None else (0.0,), dtype=np.float64)
    cls_values = np.ones(n) if cls is None else np.asarray(cls, dtype=np.float64)
    areas_grid = np.asarray(min_areas, dtype=np.int64)
    peaks = np.asarray(peak_thresholds, dtype=np.float64)
    peak_values = probs.reshape(n, -1).max(axis=1).astype(np.float64)
    # gate_keep[g * P + p, n]: the classifier gate g and the peak gate p let tile n through
    gate_keep = (
        (
            (cls_values[None, None, :] >= gates[:, None, None])
            & (peak_values[None, None, :] >= peaks[None, :, None])
            & ~forced[None, None, :]
        )
        .reshape(-1, n)
        .astype(np.float64)
    )
    best: tuple[tuple[float, ...], PostProcess] | None = None
    for t in thresholds:
        pred = probs > t
        scores = image_scores(truth, pred)
        area = pred.reshape(n, -1).sum(axis=1)
        area_keep = area[None, :] >= areas_grid[:, None]  # (A, N)
        # a tile kept scores its mask, one emptied scores empty_score: the mean over tiles is
        # mean(empty_score) + mean(kept * (scores - empty_score)), a product over the tiles
        gain = (area_keep * (scores - empty_score)[None, :]) @ gate_keep.T  # (A, G * P)
        means = (empty_score.sum() + gain).reshape(len(areas_grid), len(gates), len(peaks)) / n
        for a, g, p in np.ndindex(means.shape):
            key = (round(float(means[a, g, p]), 12), -abs(t - base_threshold), -a, -g, -p)
            if best is None or key > best[0]:
                gate, peak = float(gates[g]), float(peaks[p])
                best = (
                    key,
                    PostProcess(
                        float(t),
                        int(areas_grid[a]),
                        gate if gate > 0 else None,
                        peak if peak > 0 else None,
                    ),
                )
    assert best is not None
    pp = best[1]
    pp.empty_constant = images is not None
    pp.info = {
        "oof_score_before": competition_metric(truth, probs > base_threshold),
        "base_threshold": base_threshold,
        "oof_score_after": float(best[0][0]),
        "n_tiles": n,
    }
    return pp
