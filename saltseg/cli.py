"""The ``saltseg`` command line: one Typer app, each command a thin call into the library.

Library functions raise :class:`saltseg.errors.SaltsegError` for bad input; every command is
registered through :func:`command`, which turns such an error into one line on stderr and exit
status 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from saltseg.errors import SaltsegError

app = typer.Typer(
    name="saltseg",
    help="Salt body segmentation in seismic images (TGS Salt Identification Challenge).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a CLI command whose :class:`SaltsegError` becomes a one-line error."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                return func(*a, **kw)
            except SaltsegError as err:
                typer.echo(f"error: {err}", err=True)
                raise typer.Exit(code=2) from None

        return app.command(*args, **kwargs)(wrapper)

    return decorator


@app.callback()
def _root() -> None:
    """Salt body segmentation in seismic images (TGS Salt Identification Challenge)."""


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


def _parse_folds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SaltsegError(f"--folds must be comma-separated integers, got {text!r}") from None


def _trainer_overrides(**flags: object) -> list[str]:
    return [f"trainer.{key}={value}" for key, value in flags.items() if value is not None]


@command()
def train(
    out: Annotated[Path, typer.Option(help="Run folder, e.g. runs/NAME.")],
    config: Annotated[
        Path | None,
        typer.Option(help="Recipe YAML (see configs/); with --resume the run's own is used."),
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Kaggle-layout data folder.")] = None,
    folds: Annotated[str | None, typer.Option(help="Folds to train, e.g. 0,1,2.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run in --out.")] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: section.key=value.")
    ] = None,
    devices: Annotated[str | None, typer.Option(help="Devices per node (N or 'auto').")] = None,
    num_nodes: Annotated[int | None, typer.Option(help="Number of nodes.")] = None,
    strategy: Annotated[str | None, typer.Option(help="auto, ddp, ddp_spawn, ...")] = None,
    precision: Annotated[str | None, typer.Option(help="32, 16-mixed or bf16-mixed.")] = None,
    accelerator: Annotated[str | None, typer.Option(help="auto, cpu, gpu.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train every fold of a recipe; prints and saves the out-of-fold score, then tunes the
    post-processing on the out-of-fold predictions (as 'saltseg tune' does).

    --overwrite replaces a saltseg run in --out once every setting has been checked; a folder
    holding anything else is never used. --resume continues the run with its own config: a
    --config or --set may change only the hardware settings (devices, nodes, strategy,
    accelerator, precision, data workers).
    """
    from saltseg.config import load_config
    from saltseg.runs import Run
    from saltseg.training.kfold import train_kfold

    overrides = list(set_ or []) + _trainer_overrides(
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        accelerator=accelerator,
    )
    if config is None and not resume:
        raise SaltsegError("--config is required (only --resume reads the run's own config)")
    cfg = None
    if config is not None:
        cfg = load_config(config, overrides)
    elif overrides:
        cfg = load_config(Run.open(out).config_path, overrides)
    summary = train_kfold(
        cfg,
        out,
        data=data,
        folds=_parse_folds(folds),
        resume=resume,
        overwrite=overwrite,
        progress=progress,
    )
    if summary:
        per_fold = ", ".join(f"{k}: {v:.4f}" for k, v in summary["per_fold"].items())
        typer.echo(
            f"OOF score {summary['oof_score']:.4f} on {summary['n_tiles']} tiles "
            f"(threshold {summary['threshold']}; folds {per_fold}); saved {out}/oof_score.json"
        )
        tuned = summary["tuned"]
        partial = ""
        if not tuned["complete"]:
            used = ",".join(map(str, tuned["folds"]))
            partial = f" (folds {used} only: train the others with --resume to tune on all)"
        typer.echo(
            f"tuned OOF score {tuned['oof_score']:.4f} ({tuned['postprocess']}){partial}; "
            f"saved {tuned['file']}"
        )


@command()
def pretrain(
    data: Annotated[
        list[Path],
        typer.Option(
            help="Data folder (Kaggle layout or PNG tiles) or seismic file (SEG-Y, .npy, "
            "large image): repeat for several."
        ),
    ],
    config: Annotated[Path, typer.Option(help="Recipe YAML whose U-Net is pretrained.")],
    out: Annotated[Path, typer.Option(help="Output file, e.g. mim.pt.")],
    method: Annotated[str, typer.Option(help="mim, vicregl or simclr.")] = "mim",
    epochs: Annotated[int, typer.Option(help="Passes over the images.")] = 10,
    batch_size: Annotated[
        int | None, typer.Option(help="Tiles per step (default: the recipe's batch size).")
    ] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, cosine).")] = 1e-3,
    windows: Annotated[
        int, typer.Option(min=1, help="Most 101x101 windows drawn from one seismic file.")
    ] = 10000,
    seed: Annotated[int, typer.Option(help="Seed of the weights, batches, views, windows.")] = 0,
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda (default: a GPU if the recipe allows one).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: section.key=value.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier saltseg-pretrain file at --out.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Self-supervised pretraining of a recipe's U-Net on unlabelled tiles (labels ignored) and
    on windows of seismic lines and cubes (scaled as predict-volume scales them).

    Then train with --set model.pretrained=OUT (any recipe with the same encoder): mim gives the
    encoder and decoder, vicregl and simclr the encoder.
    """
    from saltseg.config import load_config
    from saltseg.pretrain import pretrain as run_pretrain

    cfg = load_config(config, list(set_ or []))
    summary = run_pretrain(
        cfg,
        data,
        method,
        epochs,
        out,
        overwrite=overwrite,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        progress=progress,
        max_windows=windows,
    )
    losses = summary["losses"]
    trend = f"loss {losses[0]:.4f} -> {losses[-1]:.4f}" if losses else "no step"
    typer.echo(
        f"wrote {summary['file']}: {summary['method']} on {summary['images']} images, "
        f"{summary['epochs']} epoch(s), {summary['steps']} steps, {trend}, "
        f"{summary['seconds']:.0f}s; train with --set model.pretrained={summary['file']}"
    )


@command("lr-find")
def lr_find(
    config: Annotated[Path, typer.Option(help="Recipe YAML.")],
    out: Annotated[Path, typer.Option(help="Output PNG of loss against learning rate.")],
    data: Annotated[Path | None, typer.Option(help="Kaggle-layout data folder.")] = None,
    fold: Annotated[int, typer.Option(help="Validation fold to hold out.")] = 0,
    min_lr: Annotated[float, typer.Option(help="Smallest learning rate.")] = 1e-6,
    max_lr: Annotated[float, typer.Option(help="Largest learning rate.")] = 1.0,
    steps: Annotated[int, typer.Option(help="Number of steps of the range test.")] = 100,
    stop_factor: Annotated[
        float, typer.Option(help="Stop when the loss exceeds this many times its best (0: never).")
    ] = 4.0,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: section.key=value.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output PNG.")] = False,
) -> None:
    """The learning-rate range test: a loss-vs-LR plot and a suggested learning rate."""
    from saltseg.config import load_config
    from saltseg.training.lr_finder import find_lr

    cfg = load_config(config, list(set_ or []))
    result = find_lr(
        cfg,
        out,
        data=data,
        fold=fold,
        min_lr=min_lr,
        max_lr=max_lr,
        steps=steps,
        stop_factor=stop_factor or None,
        overwrite=overwrite,
    )
    typer.echo(f"suggested lr {result['suggestion']:.3g}; plot written to {out}")


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


def _pair(text: str, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise SaltsegError(f"{name} must be two comma-separated numbers, got {text!r}") from None
    return low, high


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
    top_k: Annotated[
        int | None, typer.Option(help="Keep per run the K folds with the best OOF score.")
    ] = None,
    weights: Annotated[str | None, typer.Option(help="Per-run weights, e.g. 0.6,0.4.")] = None,
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
        pseudo_band=_pair(pseudo_band, "--pseudo-band"),
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


@command("self-train")
def self_train(
    run: Annotated[Path, typer.Option(help="Finished run to start from (with postprocess.json).")],
    unlabelled: Annotated[
        Path, typer.Option(help="Unlabelled tiles: Kaggle layout (test/images) or PNG folder.")
    ],
    out: Annotated[Path, typer.Option(help="Output folder (OUT/round_K/{predict,pseudo,run}).")],
    data: Annotated[
        Path | None, typer.Option(help="Labelled data folder (default: the run's data.root).")
    ] = None,
    rounds: Annotated[int, typer.Option(help="Rounds of pseudo-labelling and training.")] = 1,
    band: Annotated[
        str, typer.Option(help="Probabilities counted as uncertain for pseudo-labels.")
    ] = "0.2,0.8",
    max_uncertain: Annotated[
        float, typer.Option(help="Largest uncertain fraction of a pseudo-labelled tile.")
    ] = 0.02,
    share: Annotated[
        float,
        typer.Option(
            help="Keep the most confident share of salt and of empty tiles; 0: keep the tiles "
            "under --max-uncertain instead."
        ),
    ] = 0.5,
    tta: Annotated[str, typer.Option(help="TTA views of the predictions, as for predict.")] = (
        "hflip"
    ),
    batch_size: Annotated[int, typer.Option(min=1, help="Tiles per forward pass.")] = 8,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier self-training result in --out.")
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a key of the run's recipe: section.key=value."),
    ] = None,
    same_steps: Annotated[
        bool,
        typer.Option(help="Scale a round's epochs so it takes the source recipe's steps."),
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Self-training: pseudo-label the confident unlabelled tiles with the run's ensemble and
    train the same recipe on labelled + pseudo-labelled tiles, round after round.

    The pseudo-labelled tiles train in every fold and are never validated on; the labelled tiles
    keep the run's folds. Each round is an ordinary run folder: OUT/round_K/run.
    """
    from saltseg.selftrain import self_train as run_self_train

    summary = run_self_train(
        run,
        unlabelled,
        rounds,
        out,
        data=data,
        overwrite=overwrite,
        band=_pair(band, "--band"),
        max_uncertain=max_uncertain,
        share=share or None,
        tta=tta,
        batch_size=batch_size,
        progress=progress,
        echo=typer.echo,
        overrides=set_ or (),
        same_steps=same_steps,
    )
    last = summary["finished"][-1]
    typer.echo(f"wrote {out}/self-train.json; the last round's run is {last['run']}")


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
    top_k: Annotated[
        int | None, typer.Option(help="Keep per run the K folds with the best OOF score.")
    ] = None,
    weights: Annotated[str | None, typer.Option(help="Per-run weights, e.g. 0.6,0.4.")] = None,
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
        percentiles=_pair(percentiles, "--percentiles"),
        clip=_pair(clip, "--clip") if clip else None,
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
def tune(
    run: Annotated[list[Path], typer.Option(help="Run folder (repeat to tune an ensemble).")],
    data: Annotated[
        Path | None, typer.Option(help="Training data folder (default: data.root of the run).")
    ] = None,
    weights: Annotated[str | None, typer.Option(help="Per-run weights, e.g. 0.6,0.4.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output JSON (default RUN/postprocess.json; needed for several runs)."),
    ] = None,
) -> None:
    """Choose threshold, minimum area and classifier gate on the out-of-fold predictions."""
    from saltseg.inference.pipeline import tune_runs

    pp, path = tune_runs(run, data=data, weights=weights, out=out)
    typer.echo(
        f"OOF score {pp.info['oof_score_before']:.4f} (threshold {pp.info['base_threshold']:g}) "
        f"-> {pp.info['oof_score_after']:.4f} ({pp.describe()}) on {pp.info['n_tiles']} tiles; "
        f"saved {path}"
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


__all__ = ["Annotated", "Path", "app", "command"]
