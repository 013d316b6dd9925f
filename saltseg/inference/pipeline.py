"""The two entry points of inference: tune post-processing on OOF, and predict a tile folder.

``predict_folder`` streams chunks of tiles through every fold model of every run, averages the
probabilities, post-processes them and writes the submission (plus mask PNGs, averaged
probabilities and pseudo-labels on request), holding only one chunk of probabilities at a time.

Post-processing for an ensemble: ``tune_runs`` on several runs tunes on the weighted mean of
their out-of-fold probabilities, which needs runs sharing one ``folds.csv`` (each tile is then
out-of-fold for every run); the result is passed to ``predict_folder`` with ``postprocess=``.
Without it, an ensemble uses the first run's ``postprocess.json``, and defaults (threshold 0.5,
no minimum area, constant tiles empty) when that run was never tuned.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.data.tgs import load_dataset
from saltseg.data.tiles_io import write_masks
from saltseg.errors import SaltsegError
from saltseg.inference.ensemble import Ensemble, ensemble_oof, parse_weights, select_members
from saltseg.inference.pseudo import PseudoLabelWriter
from saltseg.inference.source import TileSource, open_tiles
from saltseg.inference.submission import ProbWriter, SubmissionWriter
from saltseg.outputs import OutputFolder
from saltseg.postprocess import PostProcess, load_postprocess, save_postprocess
from saltseg.runs import Run, tune_oof
from saltseg.tta import DEFAULT_TTA, parse_tta

MANIFEST = "predict.json"


def tune_runs(
    runs: Sequence[str | Path],
    data: str | Path | None = None,
    weights: str | Sequence[float] | None = None,
    out: str | Path | None = None,
) -> tuple[PostProcess, Path]:
    """Tune post-processing on the (weighted mean) out-of-fold probabilities of ``runs``.

    Args:
        runs: Run folders; several must share the same ``folds.csv``.
        data: The training data folder (default: ``data.root`` of the first run's config).
        weights: Per-run weights.
        out: Where to save the JSON (default ``RUN/postprocess.json``; required for several runs).

    Returns:
        The settings (with before/after scores in ``info``) and the file written.
    """
    if not runs:
        raise SaltsegError("no run given")
    first = Run.open(runs[0])
    if out is None and len(runs) > 1:
        raise SaltsegError("tuning several runs together needs --out FILE (then predict with it)")
    config = first.config()
    root = data if data is not None else config.data.root
    if root is None:
        raise SaltsegError(f"{first}: no data folder in its config: pass --data")
    tiles = load_dataset(root, "train")
    pp = tune_oof(ensemble_oof(runs, weights), tiles, config, root)
    pp.info.update(runs=[str(r) for r in runs], weights=parse_weights(weights, len(runs)))
    if out is None:
        return pp, first.save_postprocess(pp)
    save_postprocess(pp, out)
    return pp, Path(out)


def resolve_postprocess(
    runs: Sequence[str | Path], postprocess: str | Path | PostProcess | None = None
) -> tuple[PostProcess, str]:
    """The settings to apply and a note on where they came from (see the module docstring)."""
    if isinstance(postprocess, PostProcess):
        return postprocess, "given"
    if postprocess is not None:
        return load_postprocess(postprocess), str(postprocess)
    run = Run.open(runs[0])
    tuned = run.postprocess()
    if tuned is not None:
        return tuned, str(run.postprocess_path)
    return PostProcess(), f"defaults ({run.postprocess_path} not found: run saltseg tune)"


def _local_probs(
    ensemble: Ensemble, source: TileSource, tta: Sequence[str], batch_size: int, chunk: int
) -> Iterator[tuple[int, np.ndarray, dict[str, np.ndarray]]]:
    for start, images in source.chunks(chunk):
        depths = source.depths[start : start + len(images)]
        yield start, images, ensemble.predict(images, depths, tta, batch_size)


def predict_folder(
    runs: Sequence[str | Path],
    data: str | Path,
    out: str | Path,
    split: str = "test",
    tta: str | Sequence[str] = DEFAULT_TTA,
    weights: str | Sequence[float] | None = None,
    top_k: int | None = None,
    postprocess: str | Path | PostProcess | None = None,
    backend: str = "torch",
    devices: int = 1,
    masks: bool = False,
    save_probs: bool = False,
    pseudo_labels: str | Path | None = None,
    pseudo_band: tuple[float, float] = (0.2, 0.8),
    pseudo_max_uncertain: float = 0.02,
    pseudo_share: float | None = None,
    pseudo_overwrite: bool = False,
    batch_size: int = 8,
    chunk_size: int = 256,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Predict every tile of ``data`` with the ensemble of ``runs`` and write ``out/``.

    Writes ``out/submission.csv`` and ``out/predict.json`` (members, TTA, post-processing);
    with ``masks`` also ``out/masks/<id>.png``, with ``save_probs`` ``out/probs.npz`` (ids,
    float16 mask probabilities, classifier probabilities), with ``pseudo_labels`` a
    Kaggle-layout folder of confident tiles (rule: :mod:`saltseg.inference.pseudo`;
    ``pseudo_overwrite`` replaces earlier pseudo-labels there). ``out`` must be missing or
    empty, or hold an earlier prediction and ``overwrite`` be set; the new files replace the
    earlier ones only when the prediction has finished.

    Returns:
        A summary: tile and empty-mask counts, the post-processing and its origin, the files.
    """
    from tqdm.auto import tqdm

    views = parse_tta(tta)
    if devices < 1:
        raise SaltsegError(f"--devices must be at least 1, got {devices}")
    if batch_size < 1 or chunk_size < 1:
        raise SaltsegError(f"batch and chunk sizes must be at least 1: {batch_size}, {chunk_size}")
    source = open_tiles(data, split)
    members = select_members(runs, weights, top_k)  # fail early on a bad run, weights, top-k
    pp, origin = resolve_postprocess(runs, postprocess)
    out = Path(out)
    folder = OutputFolder(out, MANIFEST, overwrite)
    pseudo = None
    if pseudo_labels is not None:
        if Path(pseudo_labels).resolve() == out.resolve():
            raise SaltsegError("--pseudo-labels needs a folder of its own, not --out")
        pseudo = PseudoLabelWriter(
            pseudo_labels, pseudo_band, pseudo_max_uncertain, pseudo_overwrite, pseudo_share
        )
    ensemble_args = {
        "runs": [str(r) for r in runs],
        "weights": weights,
        "top_k": top_k,
        "backend": backend,
    }
    if devices > 1:
        from saltseg.inference.distributed import sharded_probs

        stream = sharded_probs(
            source, ensemble_args, views, devices, batch_size, chunk_size, progress
        )
    else:
        ensemble = Ensemble.load(**ensemble_args)
        if pp.cls_threshold and not ensemble.has_cls:
            raise SaltsegError(f"{origin} gates on a classifier, but the models have none")
        stream = _local_probs(ensemble, source, views, batch_size, chunk_size)
    staging = folder.stage()
    names = {"submission": "submission.csv"}
    if masks:
        names["masks"] = "masks"
    if save_probs:
        names["probs"] = "probs.npz"
    sub = SubmissionWriter(staging / names["submission"], source.ids)
    probs_writer = ProbWriter(staging / "probs.npz", source.ids) if save_probs else None
    if pseudo is not None:
        pseudo.start()
    n_empty = 0
    try:
        with tqdm(total=len(source), unit="tile", disable=not progress) as bar:
            for start, images, probs in stream:
                stop = start + len(images)
                ids = source.ids[start:stop]
                chunk_masks = pp.apply(probs["mask"], images, probs.get("cls"))
                n_empty += int((~chunk_masks.reshape(len(ids), -1).any(axis=1)).sum())
                sub.write(ids, chunk_masks)
                if masks:
                    write_masks(staging / "masks", ids, chunk_masks)
                if probs_writer is not None:
                    probs_writer.write(probs["mask"], probs.get("cls"))
                if pseudo is not None:
                    pseudo.write(
                        ids,
                        source.paths[start:stop],
                        probs["mask"],
                        chunk_masks,
                        source.depths[start:stop],
                    )
                bar.update(len(ids))
        sub.close()
        if probs_writer is not None:
            probs_writer.close()
    except BaseException:
        sub.abort()
        if probs_writer is not None:
            probs_writer.abort()
        if pseudo is not None:
            pseudo.abort()
        folder.abort()
        raise
    files = {key: out / name for key, name in names.items()}
    summary: dict[str, Any] = {
        "n_tiles": len(source),
        "n_empty": n_empty,
        "n_models": len(members),
        "postprocess": pp.describe(),
        "postprocess_from": origin,
        "files": {k: str(v) for k, v in files.items()},
    }
    if pseudo is not None:
        summary["pseudo_labels"] = pseudo.close()
        summary["files"]["pseudo_labels"] = str(pseudo_labels)
    summary["members"] = [
        {"run": str(m.run), "fold": m.fold, "weight": m.weight, "oof_score": m.score}
        for m in members
    ]
    summary.update(tta=list(views), backend=backend, postprocess_settings=pp.to_json())
    folder.publish(summary)
    return summary
