"""Figures of the report as base64 PNG strings: matplotlib charts and tile thumbnails."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from saltseg.data.draw import gray_to_rgb, mask_outline
from saltseg.report.analysis import ReportData

SCALE = 3
TRUTH_RGB = (40, 200, 60)
PRED_RGB = (230, 40, 40)
_FOLD_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def png_base64(image: np.ndarray) -> str:
    """An ``(H, W, 3)`` uint8 array as a base64 PNG string."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _encode(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _style(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def curves_png(curves: dict[int, pd.DataFrame]) -> str | None:
    """Losses and validation metric per epoch, one colour per fold; None without curves."""
    if not curves:
        return None
    fig, (loss_ax, metric_ax) = _figure(9, 3, ncols=2)
    for fold, frame in sorted(curves.items()):
        colour = _FOLD_COLOURS[fold % len(_FOLD_COLOURS)]
        epochs = frame["epoch"] + 1
        marker = "o" if len(frame) < 3 else None
        if "train_loss" in frame:
            loss_ax.plot(epochs, frame["train_loss"], color=colour, marker=marker, lw=1.2)
        if "val_loss" in frame:
            loss_ax.plot(epochs, frame["val_loss"], color=colour, marker=marker, ls="--", lw=1.2)
        if "val_metric" in frame:
            metric_ax.plot(
                epochs, frame["val_metric"], color=colour, marker=marker, label=f"fold {fold}"
            )
    from matplotlib.ticker import MaxNLocator

    _style(loss_ax, "Loss (solid: train, dashed: validation)", "epoch", "loss")
    _style(metric_ax, "Validation competition metric", "epoch", "score")
    for ax in (loss_ax, metric_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    metric_ax.legend(fontsize=8)
    return _encode(fig)


def groups_png(report: ReportData) -> str:
    """Mean score by coverage class and by depth quantile, bars labelled with tile counts."""
    ncols = 1 if report.depth is None else 2
    fig, axes = _figure(4.5 * ncols, 3, ncols=ncols)
    panels = [(axes[0], report.coverage["range"], report.coverage, "By salt coverage")]
    if report.depth is not None:
        edges = report.depth[["depth_min", "depth_max"]].to_numpy()
        labels = [f"{lo:.0f}-{hi:.0f}" for lo, hi in edges]
        panels.append((axes[1], labels, report.depth, "By depth quantile (ft)"))
    for ax, labels, table, title in panels:
        bars = ax.bar([str(x) for x in labels], table["mean_score"], color="#4c72b0")
        ax.bar_label(bars, labels=[f"n={n}" for n in table["n"]], fontsize=7)
        ax.set_ylim(0, 1.12)
        _style(ax, title, "", "mean score")
        ax.tick_params(axis="x", labelrotation=45)
    return _encode(fig)


def loss_png(report: ReportData) -> str:
    """Share of the score loss per error category (horizontal bars)."""
    table = report.categories.iloc[::-1]
    fig, (ax,) = _figure(5.5, 2.6)
    bars = ax.barh(table["label"], 100 * table["loss_share"], color="#c44e52")
    ax.bar_label(bars, labels=[f"{100 * v:.0f}%" for v in table["loss_share"]], fontsize=8)
    ax.set_xlim(0, 110)
    _style(ax, "Where the score is lost", "share of total loss (%)", "")
    return _encode(fig)


def calibration_png(report: ReportData) -> str:
    """Reliability diagram of pixel probabilities and the pixel count per bin."""
    table = report.calibration
    fig, (rel_ax, hist_ax) = _figure(8, 3, ncols=2)
    rel_ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    rel_ax.plot(table["mean_prob"], table["salt_fraction"], marker="o", color="#4c72b0")
    rel_ax.set_xlim(0, 1)
    rel_ax.set_ylim(0, 1)
    _style(rel_ax, f"Reliability (ECE {report.ece:.3f})", "predicted probability", "salt fraction")
    hist_ax.bar((table["lo"] + table["hi"]) / 2, table["n_pixels"], width=0.09, color="#8172b2")
    hist_ax.set_yscale("log")
    hist_ax.set_xlim(0, 1)
    _style(hist_ax, "Pixels per probability bin", "predicted probability", "pixels")
    return _encode(fig)


def sweep_png(report: ReportData) -> str:
    """OOF score against the pixel threshold, the current threshold marked."""
    table = report.sweep
    fig, (ax,) = _figure(5.5, 3)
    ax.plot(table["threshold"], table["score"], color="#4c72b0", label="threshold only")
    if "score_postprocessed" in table:
        ax.plot(
            table["threshold"],
            table["score_postprocessed"],
            color="#dd8452",
            label="with the tuned post-processing",
        )
    ax.axvline(report.current_threshold, color="grey", ls="--", lw=1, label="current threshold")
    _style(ax, "OOF score against the probability threshold", "threshold", "OOF score")
    ax.legend(fontsize=8)
    return _encode(fig)


def _upscale(array: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(array, SCALE, axis=0), SCALE, axis=1)


def overlay_png(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> str:
    """The tile, upscaled, with the truth outline in green and the prediction's in red.

    Outlines are the masks' boundary pixels (salt along the tile border included), so where both
    coincide only the red one shows.
    """
    rgb = gray_to_rgb(_upscale(image))
    rgb[_upscale(mask_outline(truth, border=True))] = TRUTH_RGB
    rgb[_upscale(mask_outline(pred, border=True))] = PRED_RGB
    return png_base64(rgb)


def probability_png(probs: np.ndarray) -> str:
    """The salt probability map, upscaled, in the viridis colour map (0 dark, 1 yellow)."""
    from matplotlib import colormaps

    rgba = colormaps["viridis"](np.clip(_upscale(probs), 0, 1), bytes=True)
    return png_base64(np.ascontiguousarray(rgba[..., :3]))
