"""The end-to-end demo on synthetic data: data, folds, training, tuning, submission, report, mosaic.

Everything runs offline on a CPU with random-init models; the demo recipe (``configs/demo.yaml``)
is small enough to finish in a few minutes on two cores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from saltseg.errors import SaltsegError
from saltseg.io import write_json
from saltseg.outputs import check_folder_path

MARKER = "demo.json"
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def _config_path() -> Path:
    if DEMO_CONFIG.exists():
        return DEMO_CONFIG
    raise SaltsegError(f"demo recipe not found at {DEMO_CONFIG}")


def run_demo(
    out: str | Path,
    n_train: int = 400,
    n_test: int = 200,
    seed: int = 0,
    overrides: list[str] | None = None,
    progress: bool = True,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Run the whole pipeline into ``out`` (rerunning replaces the previous demo).

    ``out`` must be missing, empty, or a folder of an earlier demo (``demo.json``); each stage
    replaces only its own earlier outputs. Writes ``out/data`` (synthetic Kaggle layout),
    ``out/run`` (k-fold training, OOF score, post-processing tuned at the end of training),
    ``out/predict/submission.csv``, ``out/report.html`` and ``out/mosaic``.

    Returns:
        The headline numbers of each stage.
    """
    from saltseg.config import load_config
    from saltseg.data.synthetic import generate_dataset
    from saltseg.inference.pipeline import predict_folder
    from saltseg.mosaic import evaluate_links, read_neighbors, read_truth, run_mosaic
    from saltseg.report import build_report
    from saltseg.training.kfold import train_kfold

    out = Path(out)
    check_folder_path(out)
    marker = out / MARKER
    if out.is_dir() and any(out.iterdir()) and not marker.is_file():
        raise SaltsegError(
            f"{out} is not empty and holds no earlier demo ({MARKER}): choose a new or empty folder"
        )
    config = load_config(_config_path(), overrides or [])
    data, run = out / "data", out / "run"
    started = time.perf_counter()
    results: dict[str, Any] = {}
    out.mkdir(parents=True, exist_ok=True)
    write_json({"demo": True, "n_train": n_train, "n_test": n_test, "seed": seed}, marker)

    echo(f"[1/5] synthetic data: {n_train} training + {n_test} test tiles -> {data}")
    generate_dataset(data, n_train=n_train, n_test=n_test, seed=seed, overwrite=True)

    echo(
        f"[2/5] training '{config.name}': {config.data.k} folds x {config.trainer.epochs} epochs, "
        "then post-processing tuned on the out-of-fold predictions"
    )
    summary = train_kfold(config, run, data=data, overwrite=True, progress=progress)
    results["oof_score"] = summary["oof_score"]
    results["oof_score_tuned"] = summary["tuned"]["oof_score"]
    echo(f"      OOF score {summary['oof_score']:.4f} at threshold {summary['threshold']}")
    echo(f"      OOF score {results['oof_score_tuned']:.4f} with {summary['tuned']['postprocess']}")

    echo("[3/5] predicting the test tiles (flip TTA, mean over folds)")
    pred = predict_folder([run], data, out / "predict", progress=progress, overwrite=True)
    results["submission"] = str(pred["files"]["submission"])
    echo(f"      {pred['n_tiles']} tiles, {pred['n_empty']} empty -> {results['submission']}")

    echo("[4/5] error-analysis report")
    report = build_report(run, data, out / "report.html", overwrite=True)
    echo(f"      {out / 'report.html'} (OOF score {report.headline_score:.4f})")

    echo("[5/5] jigsaw: rebuilding the sections from train and test tiles")
    mosaic = run_mosaic(
        data, out / "mosaic", pred=out / "predict" / "submission.csv", overwrite=True
    )
    quality = evaluate_links(
        read_truth(data / "mosaic_truth.csv"), read_neighbors(out / "mosaic" / "neighbors.csv")
    )
    results["mosaic"] = {"precision": quality["precision"], "recall": quality["recall"]}
    echo(
        f"      {mosaic['links']} links, precision {quality['precision']:.3f}, "
        f"recall {quality['recall']:.3f}; {mosaic['mosaics']} mosaics -> {out / 'mosaic'}"
    )
    results["seconds"] = time.perf_counter() - started
    echo(f"done in {results['seconds']:.0f}s: everything is in {out}")
    return results
