"""Commands that use a trained run: predict, predict-volume, export, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from saltseg.cli.base import TopK, Weights, command, parse_pair
from saltseg.errors import SaltsegError


@command()
def predict(
    run: Annotated[list[Path], typer.Option(help="Run folder (repeat for an ensemble).")],
    data: Annotated[
        Path, typer.Option(help="Kaggle-layout data folder (DATA/SPLIT/images) or a PNG folder.")
    ],
    out: Annotated[Path, typer.Option(help="Output folder (submission.csv, masks/, probs.npz).")],
    split: Annotated[str, typer.Option(help="Split of a Kaggle-layout folder.")] = "test",
    tta: Annotated[
        str,
        typer.Option(
            help="TTA views besides the plain tile: hflip, bright, dark, contrast, gamma "
            "(comma-separated, combine with '+', e.g. hflip,hflip+bright); 'none' for no TTA."
        ),
    ] = "hflip",
    top_k: TopK = None,
    weights: Weights = None,
    postprocess: Annotated[
        Path | None,
        typer.Option(help="Post-processing JSON (default: the first run's postprocess.json)."),
    ] = None,
    masks: Annotated[bool, typer.Option(help="Also write OUT/masks/<id>.png.")] = False,
    save_probs: Annotated[
        bool, typer.Option(help="Also write the averaged probabilities to OUT/probs.npz.")
    ] = False,
    backend: Annotated[str, typer.Option(help="torch, or onnx (after saltseg export).")] = "torch",
    devices: Annotated[int, typer.Option(help="CPU processes to shard the tiles over.")] = 1,
    pseudo_labels: Annotated[
        Path | None, typer.Option(help="Write confident tiles as a training set in this folder.")
    ] = None,
    pseudo_band: Annotated[
        str, typer.Option(help="Probabilities counted as uncertain for pseudo-labels.")
    ] = "0.2,0.8",
    pseudo_max_uncertain: Annotated[
        float, typer.Option(help="Largest uncertain fraction of a pseudo-labelled tile.")
    ] = 0.02,
    pseudo_share: Annotated[
        float | None,
        typer.Option(
            help="Keep the most confident share of salt and of empty tiles (not the max)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Tiles per forward pass.")] = 8,
    chunk_size: Annotated[int, typer.Option(min=1, help="Tiles held in memory at once.")] = 256,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier prediction in --out (its files only).")
    ] = False,
) -> None:
    """Predict tiles with the fold models of one or more runs and write a Kaggle submission."""
    from saltseg.inference.pipeline import predict_folder

    summary = predict_folder(
        run,
        data,
        out,
        split=split,
        tta=tta,
        weights=weights,
        top_k=top_k,
        postprocess=postprocess,
        backend=backend,
        devices=devices,
        masks=masks,
        save_probs=save_probs,
        pseudo_labels=pseudo_labels,
        pseudo_band=parse_pair(pseudo_band, "--pseudo-band"),
        pseudo_max_uncertain=pseudo_max_uncertain,
        pseudo_share=pseudo_share,
        batch_size=batch_size,
        chunk_size=chunk_size,
        progress=progress,
        overwrite=overwrite,
    )
    typer.echo(
        f"wrote {summary['files']['submission']}: {summary['n_tiles']} tiles "
        f"({summary['n_empty']} empty) from {summary['n_models']} model(s); "
        f"{summary['postprocess']} (from {summary['postprocess_from']})"
    )
    if "pseudo_labels" in summary:
        counts = summary["pseudo_labels"]
        typer.echo(
            f"pseudo-labels: {counts['kept']} of {counts['seen']} tiles "
            f"({counts['with_salt']} with salt) in {pseudo_labels}"
        )


@command("predict-volume")
def predict_volume(
    input_: Annotated[
        Path, typer.Argument(metavar="INPUT", help="SEG-Y line or cube, .npy, PNG or TIFF.")
    ],
    run: Annotated[list[Path], typer.Option(help="Run folder (repeat for an ensemble).")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    tta: Annotated[
        str, typer.Option(help="TTA views besides the plain window, as for predict.")
    ] = "hflip",
    top_k: TopK = None,
    weights: Weights = None,
    postprocess: Annotated[
        Path | None, typer.Option(help="Post-processing JSON (its pixel threshold is used).")
    ] = None,
    backend: Annotated[str, typer.Option(help="torch, or onnx (after saltseg export).")] = "torch",
    overlap: Annotated[float, typer.Option(help="Share of a window overlapping the next.")] = 0.5,
    blend: Annotated[str, typer.Option(help="Window weights: gaussian, pyramid or flat.")] = (
        "gaussian"
    ),
    directions: Annotated[
        str | None,
        typer.Option(help="Cube directions to average: inline,crossline (default), depth."),
    ] = None,
    clip: Annotated[
        str | None, typer.Option(help="Clip amplitudes at LOW,HIGH instead of percentiles.")
    ] = None,
    percentiles: Annotated[str, typer.Option(help="Clip percentiles of the amplitudes.")] = "1,99",
    per_line: Annotated[
        bool, typer.Option(help="Measure the percentiles on each line, not the whole input.")
    ] = False,
    resample: Annotated[
        float | None, typer.Option(help="Vertical resampling factor before prediction (2: x2).")
    ] = None,
    margin: Annotated[
        int, typer.Option(min=0, help="Extra reflect padding around each section, pixels.")
    ] = 0,
    iline_byte: Annotated[int, typer.Option(help="SEG-Y header byte of the inline.")] = 189,
    xline_byte: Annotated[int, typer.Option(help="SEG-Y header byte of the crossline.")] = 193,
    formats: Annotated[
        str | None, typer.Option(help="Outputs: npy,segy,png (default: all that apply).")
    ] = None,
    devices: Annotated[int, typer.Option(help="CPU processes to share the lines between.")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 8,
    overwrite: Annotated[
        bool, typer.Option(help="Replace earlier predict-volume outputs in OUT.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Predict a seismic section or cube of any size with overlapping 101x101 windows."""
    from saltseg.volume import RunSpec, Scaling, VolumeSettings, predict_file

    spec = RunSpec(
        [str(r) for r in run],
        weights=weights,
        top_k=top_k,
        backend=backend,
        tta=tta,
        batch_size=batch_size,
        postprocess=str(postprocess) if postprocess else None,
    )
    scaling = Scaling(
        percentiles=parse_pair(percentiles, "--percentiles"),
        clip=parse_pair(clip, "--clip") if clip else None,
        per_line=per_line,
    )
    names = tuple(d.strip() for d in directions.split(",") if d.strip()) if directions else None
    settings = VolumeSettings(overlap, blend, names, scaling, resample, margin)
    summary = predict_file(
        input_, spec, out, settings, formats, iline_byte, xline_byte, overwrite, devices, progress
    )
    shape = "x".join(map(str, summary["input"]["shape"]))
    typer.echo(
        f"wrote {out}: {', '.join(summary['outputs'])} for a {summary['input']['dimensions']}D "
        f"input of {shape} ({summary['input']['holes']} holes), "
        f"{len(summary['members'])} model(s), "
        f"directions {','.join(summary['settings']['directions'])}, "
        f"clip {summary['global_clip'][0]:.4g},{summary['global_clip'][1]:.4g}, "
        f"threshold {summary['threshold']:g} (from {summary['threshold_from']}), "
        f"{summary['seconds']:.1f}s"
    )


@command()
def export(
    run: Annotated[Path, typer.Option(help="Run folder.")],
    format_: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/onnx).")] = None,
) -> None:
    """Export every fold model of a run (ONNX: sigmoid probabilities, dynamic batch)."""
    if format_ != "onnx":
        raise SaltsegError(f"unknown export format {format_!r}; supported: onnx")
    from saltseg.inference.onnx import export_run

    paths = export_run(run, out)
    typer.echo(f"exported {len(paths)} fold model(s) to {paths[0].parent}")


@command()
def report(
    run: Annotated[Path, typer.Option(help="Run folder written by 'saltseg train'.")],
    data: Annotated[
        Path | None, typer.Option(help="Kaggle-layout data folder (default: the run's data.root).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output HTML file.")] = Path("report.html"),
    worst: Annotated[int, typer.Option(min=0, help="Worst tiles shown per error category.")] = 24,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Write a self-contained HTML error analysis of a run's out-of-fold predictions."""
    from saltseg.report import build_report

    result = build_report(run, data, out, worst=worst, overwrite=overwrite)
    top = result.categories.sort_values("loss_share").iloc[-1]
    typer.echo(
        f"wrote {out}: OOF score {result.headline_score:.4f} on {result.n_tiles} tiles; "
        f"largest loss: {top['label'].lower()} ({100 * top['loss_share']:.0f}%)"
    )


# --- mosaic -------------------------------------------------------------------------------------
