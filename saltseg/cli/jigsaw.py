"""Commands of the jigsaw solver: mosaic, mosaic-eval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from saltseg.cli.base import command


@command()
def mosaic(
    data: Annotated[Path, typer.Option(help="Kaggle-layout data folder (train and test).")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    pred: Annotated[
        Path | None, typer.Option(help="Submission CSV or folder of mask PNGs to overlay.")
    ] = None,
    min_size: Annotated[int, typer.Option(min=1, help="Smallest mosaic drawn as a PNG.")] = 8,
    n_trees: Annotated[
        int | None, typer.Option(help="Trees of each annoy index (default 16).")
    ] = None,
    search_k: Annotated[
        int | None, typer.Option(help="Nodes annoy inspects per query (default 1000).")
    ] = None,
    min_ratio: Annotated[
        float | None, typer.Option(help="Ratio test: 1 - d1/d2 at least (default 0.2).")
    ] = None,
    max_distance: Annotated[
        float | None, typer.Option(help="Largest link distance, 0 to 2 (default 0.8).")
    ] = None,
    exact: Annotated[bool, typer.Option(help="Exact nearest neighbours instead of annoy.")] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier mosaic in --out (its files only).")
    ] = False,
) -> None:
    """Solve the jigsaw: neighbors.csv, mosaics.csv and a PNG per large mosaic."""
    from saltseg.mosaic import MosaicConfig, run_mosaic

    given = {
        "n_trees": n_trees,
        "search_k": search_k,
        "min_ratio": min_ratio,
        "max_distance": max_distance,
    }
    config = MosaicConfig(
        method="exact" if exact else "annoy", **{k: v for k, v in given.items() if v is not None}
    )
    summary = run_mosaic(
        data, out, pred=pred, config=config, min_size=min_size, overwrite=overwrite
    )
    typer.echo(
        f"wrote {out}: {summary['links']} links, {summary['mosaics']} mosaics of "
        f"{summary['tiles']} tiles (largest {summary['largest']}), {summary['drawn']} drawn, "
        f"{summary['seconds']:.1f}s"
    )


@command("mosaic-eval")
def mosaic_eval(
    truth: Annotated[Path, typer.Option(help="mosaic_truth.csv: id,section,row,col.")],
    links: Annotated[Path, typer.Option(help="neighbors.csv from `saltseg mosaic`.")],
    mosaics: Annotated[Path | None, typer.Option(help="mosaics.csv to score as well.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Precision and recall of links (and pair accuracy of mosaics) against a known layout."""
    import json

    from saltseg.mosaic import (
        evaluate_links,
        evaluate_mosaics,
        read_mosaics,
        read_neighbors,
        read_truth,
    )

    layout = read_truth(truth)
    result = evaluate_links(layout, read_neighbors(links))
    if mosaics is not None:
        result.update(evaluate_mosaics(layout, read_mosaics(mosaics)))
    if json_output:
        typer.echo(json.dumps(result))
        return
    typer.echo(
        f"links: precision {result['precision']:.4f}, recall {result['recall']:.4f} "
        f"({result['correct']} of {result['links']} found, {result['true_links']} true)"
    )
    if mosaics is not None:
        typer.echo(
            f"mosaics: pair accuracy {result['pair_accuracy']:.4f} over {result['pairs']} pairs, "
            f"{result['mosaics']} mosaics, largest {result['largest']}"
        )
