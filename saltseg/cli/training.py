"""Commands that train and tune: train, pretrain, lr-find, self-train, tune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from saltseg.cli.base import Weights, command, parse_folds, parse_pair, trainer_overrides
from saltseg.errors import SaltsegError


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
    precision: Annotated[str | None, typer.Option(help="auto, 32, 16-mixed or bf16-mixed.")] = None,
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

    overrides = list(set_ or []) + trainer_overrides(
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
        folds=parse_folds(folds),
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
    out: Annotated[Path, typer.Option(help="Output file, e.g. simclr.pt.")],
    method: Annotated[
        str,
        typer.Option(
            help="simclr (ahead of mim on real tiles in bench/unlabelled.py), mim or vicregl."
        ),
    ] = "simclr",
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
        band=parse_pair(band, "--band"),
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


@command()
def tune(
    run: Annotated[list[Path], typer.Option(help="Run folder (repeat to tune an ensemble).")],
    data: Annotated[
        Path | None, typer.Option(help="Training data folder (default: data.root of the run).")
    ] = None,
    weights: Weights = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output JSON (default RUN/postprocess.json; needed for several runs)."),
    ] = None,
) -> None:
    """Choose threshold, minimum area, peak gate and classifier gate on the OOF predictions."""
    from saltseg.inference.pipeline import tune_runs

    pp, path = tune_runs(run, data=data, weights=weights, out=out)
    typer.echo(
        f"OOF score {pp.info['oof_score_before']:.4f} (threshold {pp.info['base_threshold']:g}) "
        f"-> {pp.info['oof_score_after']:.4f} ({pp.describe()}) on {pp.info['n_tiles']} tiles; "
        f"saved {path}"
    )
