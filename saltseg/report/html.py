"""Render the error-analysis report as one self-contained HTML file (images inlined as PNG)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import saltseg.report.figures as figures
from saltseg.errors import SaltsegError
from saltseg.io import check_output_file, write_text
from saltseg.report.analysis import ReportData, analyse_inputs
from saltseg.report.run import RunInputs, load_inputs
from saltseg.report.tables import CATEGORIES, worst_tiles

TEMPLATE = "report.html"


def _galleries(report: ReportData, inputs: RunInputs, worst: int) -> list[dict[str, Any]]:
    """Per error category with tiles, its worst ``worst`` tiles as thumbnail cards."""
    position = {tile_id: i for i, tile_id in enumerate(inputs.ids)}
    galleries = []
    for key, label, meaning in CATEGORIES:
        if key == "true_empty":
            continue
        chosen = worst_tiles(report.tiles, key, worst)
        n_total = int((report.tiles["category"] == key).sum())
        if not n_total:
            continue
        cards = []
        for row in chosen.itertuples():
            i = position[row.id]
            image, truth, pred = inputs.images[i], inputs.truth[i], inputs.pred[i]
            cards.append(
                {
                    "id": row.id,
                    "fold": int(row.fold),
                    "coverage": float(row.coverage),
                    "pred_coverage": float(row.pred_area) / truth.size,
                    "iou": float(row.iou),
                    "score": float(row.score),
                    "cls": float(row.cls) if "cls" in chosen else None,
                    "overlay": figures.overlay_png(image, truth, pred),
                    "probs": figures.probability_png(inputs.probs[i]),
                }
            )
        galleries.append(
            {"key": key, "label": label, "meaning": meaning, "n": n_total, "cards": cards}
        )
    return galleries


def _coverage(value: float) -> str:
    """A coverage as a percentage, with two decimals below 1% so a sliver does not read 0.0%."""
    return f"{100 * value:.2f}%" if 0 < value < 0.01 else f"{100 * value:.1f}%"


def render_html(report: ReportData, galleries: list[dict[str, Any]] | None) -> str:
    """The report page from its numbers and gallery cards (None: no gallery section)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda value, digits=1: f"{100 * value:.{digits}f}%"
    env.filters["cov"] = _coverage
    env.filters["num"] = lambda value, digits=4: "–" if value is None else f"{value:.{digits}f}"
    return env.get_template(TEMPLATE).render(
        r=report,
        folds=report.folds.to_dict("records"),
        categories=report.categories.to_dict("records"),
        coverage=report.coverage.to_dict("records"),
        depth=None if report.depth is None else report.depth.to_dict("records"),
        calibration=report.calibration.to_dict("records"),
        figures={
            "curves": figures.curves_png(report.curves),
            "loss": figures.loss_png(report),
            "groups": figures.groups_png(report),
            "calibration": figures.calibration_png(report),
            "sweep": figures.sweep_png(report),
        },
        galleries=galleries,
        created=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )


def build_report(
    run: str | Path,
    data: str | Path | None,
    out: str | Path,
    worst: int = 24,
    overwrite: bool = False,
) -> ReportData:
    """Write the HTML report (see :func:`write_report`) and return its numbers.

    ``out`` must not exist unless ``overwrite`` is set; it is written atomically.
    """
    if worst < 0:
        raise SaltsegError(f"worst must be >= 0, got {worst}")
    out = check_output_file(out, overwrite)
    inputs = load_inputs(run, data)
    report = analyse_inputs(inputs)
    html = render_html(report, _galleries(report, inputs, worst) if worst else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(html, out)
    return report


def write_report(
    run: str | Path,
    data: str | Path | None,
    out: str | Path,
    worst: int = 24,
    overwrite: bool = False,
) -> Path:
    """Analyse a run's out-of-fold predictions and write the HTML report.

    Args:
        run: A run folder written by ``saltseg train``.
        data: The Kaggle-layout data folder it was trained on (None: the run's ``data.root``).
        out: The HTML file to write (its folder is created).
        worst: Number of worst tiles shown per error category (0: no galleries).
        overwrite: Replace an existing ``out``.

    Returns:
        The path written.

    Raises:
        SaltsegError: No out-of-fold predictions, OOF ids absent from ``data``, or ``worst < 0``.
    """
    build_report(run, data, out, worst, overwrite)
    return Path(out)
