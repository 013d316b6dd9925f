"""The numbers of the error-analysis report, gathered in one :class:`ReportData`.

Besides the tables of :mod:`saltseg.report.tables` (per tile, per error category, by coverage
and depth): per-fold scores, training curves, the calibration of the pixel probabilities, the
classifier head's empty/non-empty accuracy and the OOF score against the pixel threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saltseg.metrics import competition_metric, image_scores
from saltseg.report.run import RunInputs, load_inputs
from saltseg.report.tables import (
    category_table,
    coverage_table,
    depth_table,
    tile_table,
)

SWEEP_THRESHOLDS = tuple(np.round(np.arange(0.05, 0.951, 0.025), 3).tolist())


@dataclass
class ReportData:
    """Everything the report shows, as plain numbers and frames.

    Attributes:
        run: The run folder.
        name: The recipe name.
        model: A short model description.
        n_tiles: Number of out-of-fold tiles.
        threshold: The run's plain pixel threshold.
        score: OOF score with plain thresholding at ``threshold``.
        postprocess: Description of the tuned post-processing, or None.
        score_postprocessed: OOF score after it, or None.
        current_threshold: The threshold of the masks analysed below.
        folds: Per fold: ``fold, n, score, score_postprocessed, best_epoch``.
        curves: Per fold, per-epoch training metrics.
        tiles: One row per tile: ``id, fold, depth, coverage, coverage_class, truth_area,
            pred_area, error_area, iou, score, category`` (and ``cls`` with a classifier).
        categories: Per category: ``category, label, meaning, n, share, mean_score, mean_iou,
            loss, loss_share`` (``loss`` in points of the mean score).
        coverage: Score by coverage class.
        depth: Score by depth quantile, or None without depths.
        calibration: Reliability of the pixel probabilities, per probability bin.
        ece: Expected calibration error of the pixel probabilities.
        classifier: Empty/non-empty accuracy of the classifier head and of the masks, or None.
        sweep: OOF score per threshold (``threshold, score`` and ``score_postprocessed``).
        ancestry: Where the run comes from: initial weights, self-training round.
    """

    run: Path
    name: str
    model: str
    n_tiles: int
    threshold: float
    score: float
    postprocess: str | None
    score_postprocessed: float | None
    current_threshold: float
    folds: pd.DataFrame
    curves: dict[int, pd.DataFrame]
    tiles: pd.DataFrame
    categories: pd.DataFrame
    coverage: pd.DataFrame
    depth: pd.DataFrame | None
    calibration: pd.DataFrame
    ece: float
    classifier: dict[str, Any] | None
    sweep: pd.DataFrame
    ancestry: list[str] = field(default_factory=list)

    @property
    def headline_score(self) -> float:
        """The score of the analysed masks (post-processed when tuned)."""
        return self.score if self.score_postprocessed is None else self.score_postprocessed


def calibration_table(
    probs: np.ndarray, truth: np.ndarray, bins: int = 10, chunk: int = 512
) -> tuple[pd.DataFrame, float]:
    """Reliability of pixel probabilities: per bin, mean probability and observed salt fraction.

    Returns:
        The table (``lo, hi, n_pixels, mean_prob, salt_fraction``; empty bins dropped) and the
        expected calibration error (pixel-weighted mean of ``|mean_prob - salt_fraction|``).
    """
    counts, prob_sum, salt_sum = np.zeros(bins), np.zeros(bins), np.zeros(bins)
    for start in range(0, len(probs), chunk):
        p = probs[start : start + chunk].ravel().astype(np.float64)
        t = truth[start : start + chunk].ravel()
        b = np.minimum((p * bins).astype(np.int64), bins - 1)
        counts += np.bincount(b, minlength=bins)
        prob_sum += np.bincount(b, weights=p, minlength=bins)
        salt_sum += np.bincount(b, weights=t, minlength=bins)
    keep = counts > 0
    table = pd.DataFrame(
        {
            "lo": np.arange(bins)[keep] / bins,
            "hi": (np.arange(bins)[keep] + 1) / bins,
            "n_pixels": counts[keep].astype(np.int64),
            "mean_prob": prob_sum[keep] / counts[keep],
            "salt_fraction": salt_sum[keep] / counts[keep],
        }
    )
    gap = np.abs(table["mean_prob"] - table["salt_fraction"])
    ece = float((gap * table["n_pixels"]).sum() / max(counts.sum(), 1))
    return table, ece


def classifier_summary(
    cls: np.ndarray, truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Empty/non-empty accuracy of the classifier head (at ``threshold``) and of the masks."""
    n = len(truth)
    salt = truth.reshape(n, -1).any(axis=1)
    said = np.asarray(cls) >= threshold
    return {
        "threshold": threshold,
        "accuracy": float((said == salt).mean()),
        "mask_accuracy": float((pred.reshape(n, -1).any(axis=1) == salt).mean()),
        "salt_called_salt": int((said & salt).sum()),
        "salt_called_empty": int((~said & salt).sum()),
        "empty_called_salt": int((said & ~salt).sum()),
        "empty_called_empty": int((~said & ~salt).sum()),
    }


def threshold_sweep(
    inputs: RunInputs, thresholds: Sequence[float] = SWEEP_THRESHOLDS
) -> pd.DataFrame:
    """OOF score per pixel threshold: plain, and with the rest of the tuned post-processing."""
    rows = []
    for t in sorted({*thresholds, inputs.threshold, _current_threshold(inputs)}):
        row = {"threshold": t, "score": competition_metric(inputs.truth, inputs.probs > t)}
        if inputs.postprocess is not None:
            pp = replace(inputs.postprocess, threshold=t)
            pred = pp.apply(inputs.probs, inputs.images, inputs.cls)
            row["score_postprocessed"] = competition_metric(inputs.truth, pred)
        rows.append(row)
    return pd.DataFrame(rows)


def _current_threshold(inputs: RunInputs) -> float:
    pp = inputs.postprocess
    return float(pp.threshold) if pp is not None else inputs.threshold


def analyse_inputs(inputs: RunInputs) -> ReportData:
    """The report's numbers from loaded run inputs (see :func:`analyse`)."""
    tiles = tile_table(
        inputs.ids, inputs.truth, inputs.pred, inputs.folds, inputs.depths, inputs.cls
    )
    plain = inputs.probs > inputs.threshold
    plain_scores = image_scores(inputs.truth, plain)
    pp = inputs.postprocess
    folds = []
    for fold in np.unique(inputs.folds):
        sel = inputs.folds == fold
        folds.append(
            {
                "fold": int(fold),
                "n": int(sel.sum()),
                "score": float(plain_scores[sel].mean()),
                "score_postprocessed": float(tiles["score"][sel].mean()) if pp else None,
                "best_epoch": inputs.fold_info.get(int(fold), {}).get("best_epoch"),
            }
        )
    calibration, ece = calibration_table(inputs.probs, inputs.truth)
    return ReportData(
        run=inputs.run,
        name=inputs.name,
        model=inputs.model,
        n_tiles=len(tiles),
        threshold=inputs.threshold,
        score=float(plain_scores.mean()),
        postprocess=pp.describe() if pp is not None else None,
        score_postprocessed=float(tiles["score"].mean()) if pp is not None else None,
        current_threshold=_current_threshold(inputs),
        folds=pd.DataFrame(folds),
        curves=inputs.curves,
        tiles=tiles,
        categories=category_table(tiles),
        coverage=coverage_table(tiles),
        depth=depth_table(tiles),
        calibration=calibration,
        ece=ece,
        classifier=(
            None
            if inputs.cls is None
            else classifier_summary(
                inputs.cls, inputs.truth, inputs.pred, (pp.cls_threshold if pp else None) or 0.5
            )
        ),
        sweep=threshold_sweep(inputs),
        ancestry=inputs.ancestry,
    )


def analyse(run: str | Path, data: str | Path | None = None) -> ReportData:
    """Analyse the out-of-fold predictions of a run against the truth.

    Args:
        run: A run folder written by ``saltseg train``.
        data: The Kaggle-layout data folder it was trained on (None: the run's ``data.root``).

    Raises:
        SaltsegError: No out-of-fold predictions, or OOF ids absent from ``data``.
    """
    return analyse_inputs(load_inputs(run, data))
