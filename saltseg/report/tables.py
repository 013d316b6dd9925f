"""Per-tile errors and where the score is lost: by error category, coverage class and depth.

Every tile falls into one category of :data:`CATEGORIES` by its truth, its predicted mask and
how many IoU thresholds it passes; as in the metric, an IoU passes a threshold only when above
it, so an IoU of exactly 0.5 is a poor overlap and one of exactly 0.95 a partial.

A tile's loss is ``1 - score``. The loss share of a group of tiles is its summed loss over the
summed loss of all tiles, so the shares say where the points of the competition metric go; the
``loss`` column (summed loss over the number of tiles) is how many points of the mean score a
group costs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from saltseg.data.folds import coverage_class
from saltseg.metrics import image_scores, iou

#: (key, label, meaning), in display order.
CATEGORIES: tuple[tuple[str, str, str], ...] = (
    ("true_empty", "True empty", "no salt in the truth, none predicted (score 1)"),
    ("false_positive", "False positive", "no salt in the truth, salt predicted (score 0)"),
    ("missed", "Missed salt", "salt in the truth, none predicted (score 0)"),
    ("poor", "Poor overlap", "both have salt, IoU <= 0.5: no threshold passed (score 0)"),
    ("partial", "Partial", "0.5 < IoU <= 0.95: some thresholds passed"),
    ("good", "Good", "IoU > 0.95: every threshold passed (score 1)"),
)


def categorise(truth: np.ndarray, pred: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """The category key of each tile, ``(N,)`` strings from :data:`CATEGORIES`.

    Args:
        truth: bool ``(N, H, W)`` masks.
        pred: bool ``(N, H, W)`` predicted masks.
        scores: Their :func:`~saltseg.metrics.image_scores`, when already computed.
    """
    n = len(truth)
    has_truth = truth.reshape(n, -1).any(axis=1)
    has_pred = pred.reshape(n, -1).any(axis=1)
    scores = image_scores(truth, pred) if scores is None else scores
    return np.select(
        [
            ~has_truth & ~has_pred,
            ~has_truth,
            ~has_pred,
            scores == 0,
            scores < 1,
        ],
        ["true_empty", "false_positive", "missed", "poor", "partial"],
        default="good",
    )


def tile_table(
    ids: Sequence[str],
    truth: np.ndarray,
    pred: np.ndarray,
    folds: np.ndarray | None = None,
    depths: np.ndarray | None = None,
    cls: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per tile with its coverage, areas, IoU, score and error category."""
    n = len(truth)
    scores = image_scores(truth, pred)
    frame = pd.DataFrame(
        {
            "id": list(ids),
            "fold": np.zeros(n, int) if folds is None else np.asarray(folds),
            "depth": np.full(n, np.nan) if depths is None else np.asarray(depths, float),
            "coverage": truth.reshape(n, -1).mean(axis=1),
            "coverage_class": coverage_class(truth),
            "truth_area": truth.reshape(n, -1).sum(axis=1),
            "pred_area": pred.reshape(n, -1).sum(axis=1),
            "error_area": (truth ^ pred).reshape(n, -1).sum(axis=1),
            "iou": iou(truth, pred),
            "score": scores,
            "category": categorise(truth, pred, scores),
        }
    )
    if cls is not None:
        frame["cls"] = np.asarray(cls, dtype=float)
    return frame


def _group_scores(tiles: pd.DataFrame, by: str | pd.Series) -> pd.DataFrame:
    """Per group: ``n, mean_score, mean_iou, share, loss, loss_share`` (see the module doc)."""
    n, total = len(tiles), float((1 - tiles["score"]).sum())
    table = (
        tiles.assign(_loss=1 - tiles["score"])
        .groupby(by)
        .agg(
            n=("score", "size"),
            mean_score=("score", "mean"),
            mean_iou=("iou", "mean"),
            _loss=("_loss", "sum"),
        )
    )
    table["share"] = table["n"] / n
    table["loss"] = table["_loss"] / n
    table["loss_share"] = table["_loss"] / total if total > 0 else 0.0
    return table.drop(columns="_loss")


def category_table(tiles: pd.DataFrame) -> pd.DataFrame:
    """Count, mean score and share of the score loss of each category (all categories listed)."""
    table = _group_scores(tiles, "category")
    keys = [key for key, _, _ in CATEGORIES]
    table = table.reindex(keys)
    table["n"] = table["n"].fillna(0).astype(int)
    table[["share", "loss", "loss_share"]] = table[["share", "loss", "loss_share"]].fillna(0.0)
    table.insert(0, "meaning", [meaning for _, _, meaning in CATEGORIES])
    table.insert(0, "label", [label for _, label, _ in CATEGORIES])
    return table.rename_axis("category").reset_index()


def coverage_table(tiles: pd.DataFrame) -> pd.DataFrame:
    """Score by coverage class (0 empty, k: coverage in ((k-1)/10, k/10]); classes with tiles."""
    table = _group_scores(tiles, "coverage_class")
    table["pred_empty"] = (tiles["pred_area"] == 0).groupby(tiles["coverage_class"]).sum()
    table = table.rename_axis("coverage_class").reset_index()
    table.insert(
        1,
        "range",
        ["empty" if k == 0 else f"{10 * (k - 1)}-{10 * k}%" for k in table["coverage_class"]],
    )
    return table


def depth_table(tiles: pd.DataFrame, bins: int = 5) -> pd.DataFrame | None:
    """Score by depth quantile (``depth_min, depth_max`` in feet); None when no depth is known.

    Loss shares are of the loss of all tiles, those of unknown depth included.
    """
    known = np.isfinite(tiles["depth"].to_numpy())
    if not known.any():
        return None
    depths = tiles["depth"].to_numpy()[known]
    edges = np.unique(np.quantile(depths, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0]])
    which = np.full(len(tiles), -1)
    which[known] = np.clip(np.searchsorted(edges, depths, side="right") - 1, 0, len(edges) - 2)
    depth_bin = pd.Series(which, index=tiles.index, name="depth_bin")
    table = _group_scores(tiles, depth_bin)
    table["salt_share"] = (tiles["truth_area"] > 0).groupby(depth_bin).mean()
    table = table.drop(index=-1, errors="ignore").reset_index()
    table.insert(1, "depth_min", edges[table["depth_bin"]])
    table.insert(2, "depth_max", edges[table["depth_bin"] + 1])
    return table


def worst_tiles(tiles: pd.DataFrame, category: str, n: int) -> pd.DataFrame:
    """The ``n`` lowest-scoring tiles of a category, ties broken by the larger error area."""
    chosen = tiles[tiles["category"] == category]
    return chosen.sort_values(["score", "error_area", "id"], ascending=[True, False, True]).head(n)
