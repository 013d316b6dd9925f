"""Self-training: rounds of pseudo-labelling unlabelled tiles and training on them.

Round ``k`` predicts the unlabelled tiles with the previous run (round 1: the source run) the way
``saltseg predict`` does (all its fold models, TTA, its ``postprocess.json`` tuned on
out-of-fold predictions), keeps the confident tiles (:mod:`saltseg.inference.pseudo`) and trains
a new run with the source run's recipe on the labelled tiles plus those pseudo-labels
(``data.pseudo``): the pseudo-labelled tiles train in every fold and are never validated on, and
the labelled tiles keep the source run's folds. The output folder::

    OUT/self-train.json       marks the folder, settings and the rounds finished
    OUT/round_K/predict/      the prediction of the unlabelled tiles (predict.json, submission)
    OUT/round_K/pseudo/       the confident tiles, a Kaggle-layout training set
    OUT/round_K/run/          an ordinary run folder (predict, report and tune work on it)

Every input is checked before the first write. A folder holding anything but an earlier
self-training result is refused; ``overwrite`` replaces such a result's rounds through their own
rules (a run's files, a prediction's and pseudo-labels' listed files), nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from saltseg.config import Config, apply_overrides, config_from_dict
from saltseg.data.tgs import load_dataset
from saltseg.errors import SaltsegError
from saltseg.inference.pipeline import MANIFEST as PREDICT_MANIFEST
from saltseg.inference.pipeline import predict_folder
from saltseg.inference.pseudo import MANIFEST as PSEUDO_MANIFEST
from saltseg.inference.pseudo import check_rule
from saltseg.inference.source import open_tiles
from saltseg.io import write_json
from saltseg.outputs import OutputFolder, check_folder_path
from saltseg.runs import POSTPROCESS, Run
from saltseg.training.kfold import check_run_inputs, train_kfold
from saltseg.tta import DEFAULT_TTA, parse_tta

MANIFEST = "self-train.json"
FORMAT = {"format": "saltseg-self-train", "version": 1}


def round_dir(out: str | Path, k: int) -> Path:
    """``OUT/round_K``."""
    return Path(out) / f"round_{k}"


def check_source(run: str | Path) -> Run:
    """The source run, which must have fold models, out-of-fold predictions and tuned
    post-processing.

    Raises:
        SaltsegError: one line saying what is missing.
    """
    source = Run.open(run)
    if not source.fold_models():
        raise SaltsegError(f"{source.root}: no fold checkpoints: train the run first")
    if not any(source.oof_path(f).is_file() for f in source.folds()):
        raise SaltsegError(
            f"{source.root}: no out-of-fold predictions (fold_K/oof.npz): self-training needs "
            "a run that finished training"
        )
    if source.postprocess() is None:
        raise SaltsegError(
            f"{source.root}: no {POSTPROCESS}: tune it first (saltseg tune --run {source.root})"
        )
    return source


def check_output(out: Path, rounds: int, overwrite: bool, source: Run) -> None:
    """Check, writing nothing, that the rounds may be written to ``out``.

    Raises:
        SaltsegError: ``out`` is a file or under one, holds something other than a
            self-training result, holds one and ``overwrite`` is off, holds the source run, or a
            round's folders hold files saltseg would not replace.
    """
    check_folder_path(out)
    if source.root.resolve().is_relative_to(out.resolve()):
        raise SaltsegError(f"the source run {source.root} lies inside --out {out}")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / MANIFEST).is_file():
        raise SaltsegError(
            f"{out} is not empty and holds no {MANIFEST}: choose a new or empty folder "
            "(saltseg only replaces its own results)"
        )
    if not overwrite:
        raise SaltsegError(
            f"{out} holds an earlier self-training result: pass --overwrite to replace it"
        )
    for k in range(1, rounds + 1):
        folder = round_dir(out, k)
        if (folder / "run").exists():
            Run(folder / "run").check_new(overwrite=True)
        OutputFolder(folder / "predict", PREDICT_MANIFEST, overwrite=True)
        OutputFolder(folder / "pseudo", PSEUDO_MANIFEST, overwrite=True)


def scaled_epochs(epochs: int, labelled: int, pseudo: int) -> int:
    """Epochs over ``labelled + pseudo`` tiles taking about the steps of ``epochs`` over
    ``labelled`` (at least 1)."""
    return max(1, round(epochs * labelled / (labelled + pseudo)))


def round_config(config: Config, source: Run, root: Path, pseudo: Path) -> Config:
    """The recipe of a round: the source run's, on its labelled folds plus ``pseudo``."""
    data = config.data.model_copy(
        update={
            "root": root.resolve(),
            "folds_file": source.folds_path.resolve(),
            "pseudo": [pseudo.resolve()],
        }
    )
    return config.model_copy(update={"data": data})


def self_train(
    run: str | Path,
    unlabelled: str | Path,
    rounds: int,
    out: str | Path,
    data: str | Path | None = None,
    overwrite: bool = False,
    band: tuple[float, float] = (0.2, 0.8),
    max_uncertain: float = 0.02,
    share: float | None = 0.5,
    tta: str | Sequence[str] = DEFAULT_TTA,
    batch_size: int = 8,
    progress: bool = True,
    echo: Callable[[str], Any] | None = None,
    overrides: Sequence[str] = (),
    same_steps: bool = False,
) -> dict[str, Any]:
    """Run ``rounds`` rounds of self-training from a finished run (see the module docstring).

    Args:
        run: The source run (fold models, out-of-fold predictions, ``postprocess.json``).
        unlabelled: The unlabelled tiles: a Kaggle-layout folder (its ``test/images``) or a
            folder of PNG tiles (``depths.csv`` beside them if the recipe uses depths).
        rounds: Number of rounds.
        out: The output folder.
        data: The labelled data folder (default: the source run's ``data.root``).
        overwrite: Replace an earlier self-training result in ``out``.
        band: Probabilities counted as uncertain.
        max_uncertain: Largest share of uncertain pixels of a kept tile (with ``share=None``).
        share: Keep the most confident ``share`` of the tiles predicted with salt and of those
            predicted empty (:mod:`saltseg.inference.pseudo`); ``None``: keep the tiles with at
            most ``max_uncertain`` uncertain pixels instead.
        tta: Test-time augmentation views of the predictions.
        batch_size: Tiles per forward pass when predicting.
        progress: Show progress bars.
        echo: Called with one line per finished round.
        overrides: ``section.key=value`` changes to the source recipe for every round (e.g.
            ``trainer.epochs=2``, to keep the number of steps when pseudo-labels add tiles);
            the folds and data keys are the round's own.
        same_steps: Scale each round's epochs by labelled / (labelled + pseudo-labelled tiles),
            so that a round takes about as many optimizer steps as the source recipe (at least
            one epoch).

    Returns:
        The content of ``self-train.json``: settings and, per round, the pseudo-label counts,
        the run folder and its out-of-fold scores.

    Raises:
        SaltsegError: a bad input, found before anything is written; or a round that keeps no
            tile (then widen ``band`` or raise ``max_uncertain``).
    """
    if not isinstance(rounds, int) or rounds < 1:
        raise SaltsegError(f"rounds must be at least 1, got {rounds}")
    check_rule(band, max_uncertain, share)
    views = parse_tta(tta)
    source = check_source(run)
    out = Path(out)
    check_output(out, rounds, overwrite, source)
    config = source.config()
    if overrides:
        config = config_from_dict(apply_overrides(config.model_dump(mode="json"), list(overrides)))
    root = Path(data) if data is not None else config.data.root
    if root is None:
        raise SaltsegError(f"{source.root}: no data folder in its config: pass --data")
    labelled = load_dataset(root, "train")
    source.folds_frame(ids=labelled.ids, k=config.data.k)  # the same labelled tiles
    try:
        tiles = open_tiles(unlabelled, "test")
    except SaltsegError as err:
        raise SaltsegError(f"no unlabelled tiles: {err}") from None
    clash = sorted(set(tiles.ids) & set(labelled.ids))
    if clash:
        raise SaltsegError(
            f"{len(clash)} unlabelled tile(s) are labelled tiles too, e.g. {clash[0]!r}: "
            "pass tiles without labels as --unlabelled"
        )
    check_run_inputs(config, Path(root), None)

    summary: dict[str, Any] = {
        **FORMAT,
        "source_run": str(source.root.resolve()),
        "data": str(Path(root).resolve()),
        "unlabelled": str(Path(unlabelled).resolve()),
        "unlabelled_tiles": len(tiles),
        "rounds": rounds,
        "band": list(band),
        "max_uncertain": max_uncertain,
        "share": share,
        "tta": list(views),
        "overrides": list(overrides),
        "same_steps": same_steps,
        "finished": [],
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(summary, out / MANIFEST)
    previous = source.root
    for k in range(1, rounds + 1):
        folder = round_dir(out, k)
        folder.mkdir(exist_ok=True)
        predicted = predict_folder(
            [previous],
            unlabelled,
            folder / "predict",
            split="test",
            tta=views,
            pseudo_labels=folder / "pseudo",
            pseudo_band=band,
            pseudo_max_uncertain=max_uncertain,
            pseudo_share=share,
            pseudo_overwrite=overwrite,
            batch_size=batch_size,
            progress=progress,
            overwrite=overwrite,
        )
        counts = predicted["pseudo_labels"]
        if not counts["kept"]:
            raise SaltsegError(
                f"round {k}: none of the {counts['seen']} unlabelled tiles is confident enough "
                f"({max_uncertain:.0%} of pixels at most within {band}): widen --band or raise "
                "--max-uncertain"
            )
        info = {
            "self_training": {
                "source_run": summary["source_run"],
                "round": k,
                "previous_run": str(Path(previous).resolve()),
                "pseudo_labels": str((folder / "pseudo").resolve()),
                "pseudo_tiles": counts["kept"],
                "unlabelled_tiles": counts["seen"],
            }
        }
        round_cfg = round_config(config, source, root, folder / "pseudo")
        if same_steps:
            epochs = scaled_epochs(config.trainer.epochs, len(labelled), counts["kept"])
            trainer = round_cfg.trainer.model_copy(update={"epochs": epochs})
            round_cfg = round_cfg.model_copy(update={"trainer": trainer})
        result = train_kfold(
            round_cfg,
            folder / "run",
            data=root,
            overwrite=overwrite,
            progress=progress,
            info=info,
        )
        previous = folder / "run"
        done = {
            "round": k,
            "run": str(previous),
            "pseudo_tiles": counts["kept"],
            "pseudo_with_salt": counts["with_salt"],
            "unlabelled_tiles": counts["seen"],
            "epochs": round_cfg.trainer.epochs,
            "oof_score": result["oof_score"],
            "tuned_oof_score": result["tuned"]["oof_score"],
        }
        summary["finished"].append(done)
        write_json(summary, out / MANIFEST)
        if echo is not None:
            echo(
                f"round {k}: {counts['kept']} of {counts['seen']} unlabelled tiles kept "
                f"({counts['with_salt']} with salt); OOF score {done['oof_score']:.4f}, "
                f"tuned {done['tuned_oof_score']:.4f}; run {previous}"
            )
    return summary
