"""Commands that set up and look at data: demo, version, synth, evaluate, folds, models,
augment-preview.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from saltseg.cli.base import command
from saltseg.errors import SaltsegError


@command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder (replaced if it holds a demo).")] = Path(
        "runs/demo"
    ),
    n_train: Annotated[int, typer.Option(min=20, help="Synthetic training tiles.")] = 400,
    n_test: Annotated[int, typer.Option(min=1, help="Synthetic test tiles.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data.")] = 0,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key of configs/demo.yaml.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Synthetic data -> k-fold training -> tuning -> submission -> report -> mosaic, offline."""
    from saltseg.demo import run_demo

    run_demo(out, n_train, n_test, seed, list(set_ or []), progress=progress, echo=typer.echo)


@command()
def version() -> None:
    """Print the saltseg version."""
    from saltseg import __version__

    typer.echo(__version__)


# --- data ---------------------------------------------------------------------------------------


@command()
def synth(
    out: Annotated[
        Path | None, typer.Argument(help="Folder to write the dataset to (Kaggle layout).")
    ] = None,
    n_train: Annotated[int, typer.Option(help="Labelled tiles.")] = 400,
    n_test: Annotated[int, typer.Option(help="Unlabelled tiles.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed; same seed and sizes, same bytes.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a dataset already in OUT.")] = False,
    preview: Annotated[
        Path | None,
        typer.Option(help="Draw training tiles with their salt outlined to this PNG."),
    ] = None,
    real: Annotated[
        Path | None, typer.Option(help="Real data folder drawn beside the synthetic tiles.")
    ] = None,
    preview_tiles: Annotated[int, typer.Option(help="Tiles drawn per dataset.")] = 48,
) -> None:
    """Generate synthetic seismic tiles with salt masks; optionally preview them beside real ones.

    With --preview and an OUT that already holds a dataset (and no --overwrite), that dataset is
    previewed as it is; without OUT, a dataset is generated in a temporary folder for the preview.
    """
    import tempfile

    from saltseg.data.synthetic import dataset_entries, generate_dataset

    if out is None and preview is None:
        raise SaltsegError("give an output folder OUT, --preview PNG, or both")
    if real is not None and preview is None:
        raise SaltsegError("--real is only used with --preview")
    with tempfile.TemporaryDirectory(prefix="saltseg-synth-") as scratch:
        data = Path(scratch) if out is None else out
        if out is not None and preview is not None and dataset_entries(out) and not overwrite:
            typer.echo(f"previewing the dataset already in {out}")
        else:
            done = generate_dataset(data, n_train, n_test, seed=seed, overwrite=overwrite)
            typer.echo(
                f"wrote {done.n_train} train + {done.n_test} test tiles from {done.n_sections} "
                f"sections to {data} in {done.seconds:.1f}s "
                f"({done.empty_fraction:.0%} of training tiles empty)"
            )
        if preview is not None:
            from saltseg.data.preview import format_stats, write_preview

            stats = write_preview(preview, data, real, n_tiles=preview_tiles, seed=seed)
            typer.echo(format_stats(stats))
            typer.echo(f"wrote {preview}")


@command()
def evaluate(
    truth: Annotated[
        Path, typer.Option(help="Data folder (train/masks), mask folder or train.csv.")
    ],
    pred: Annotated[
        Path, typer.Option(help="Submission CSV (id,rle_mask) or a folder of mask PNGs.")
    ],
    per_image: Annotated[
        Path | None, typer.Option(help="Write id,iou,score per image to this CSV.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --per-image file.")] = False,
) -> None:
    """Score predictions against the truth with the competition metric."""
    import json

    from saltseg.evaluate import evaluate as score

    result = score(truth, pred, per_image, overwrite)
    if json_output:
        typer.echo(json.dumps(result))
    else:
        typer.echo(
            f"score {result['score']:.4f}  (mean IoU {result['mean_iou']:.4f}, {result['n']} tiles)"
        )


@command()
def folds(
    data: Annotated[Path, typer.Argument(help="Kaggle-layout data folder.")],
    k: Annotated[int, typer.Option(help="Number of folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Shuffling seed.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Output CSV (default DATA/folds.csv).")] = None,
    depth_bins: Annotated[int, typer.Option(help="Depth quantiles to stratify by.")] = 2,
    group_by_mosaic: Annotated[
        Path | None, typer.Option(help="mosaics.csv: keep each mosaic within one fold.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output CSV.")] = False,
) -> None:
    """Write folds.csv: k folds stratified by salt coverage class and depth."""
    from saltseg.data.folds import make_folds, write_folds
    from saltseg.data.tgs import load_dataset
    from saltseg.io import check_output_file

    out = check_output_file(out or Path(data) / "folds.csv", overwrite)
    tiles = load_dataset(data, "train")
    groups = None
    if group_by_mosaic is not None:
        from saltseg.mosaic import mosaic_groups

        groups = mosaic_groups(group_by_mosaic)
    frame = make_folds(
        tiles.ids,
        tiles.masks,
        k=k,
        seed=seed,
        depths=tiles.depths,
        depth_bins=depth_bins,
        groups=groups,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_folds(frame, out)
    sizes = frame["fold"].value_counts().sort_index().tolist()
    typer.echo(f"wrote {out}: {len(frame)} tiles in {k} folds of sizes {sizes}")


# --- models -------------------------------------------------------------------------------------


@command()
def models() -> None:
    """List the model names accepted by create_model, with a one-line description each."""
    from saltseg.models import describe_models

    descriptions = describe_models()
    width = max(map(len, descriptions))
    for name, text in descriptions.items():
        typer.echo(f"{name:<{width}}  {text}")


# --- training -----------------------------------------------------------------------------------


@command("augment-preview")
def augment_preview(
    out: Annotated[Path, typer.Option(help="Output PNG.")],
    data: Annotated[
        Path | None, typer.Option(help="Kaggle-layout data folder (default: built-in demo tiles).")
    ] = None,
    n: Annotated[int, typer.Option(min=1, help="Number of tiles (rows).")] = 8,
    augs: Annotated[int, typer.Option(min=1, help="Augmented versions per tile.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed for the tile choice and the augmentations.")] = 0,
    config: Annotated[
        Path | None, typer.Option(help="YAML with augment settings ('augment:' section or flat).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output PNG.")] = False,
) -> None:
    """Write a PNG grid: per row a tile at model geometry, then augmented copies (mask in red)."""
    from saltseg.data.preview import write_augment_preview

    n_tiles, size = write_augment_preview(out, data, n, augs, seed, config, overwrite)
    typer.echo(f"wrote {out}: {n_tiles} tiles x {1 + augs} columns, {size}px cells")


# --- inference ----------------------------------------------------------------------------------
