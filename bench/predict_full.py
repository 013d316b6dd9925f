"""The full test set through ``saltseg predict``: 18000 tiles, one model, one fold, flip TTA.

Writes a synthetic set with the competition's test size, trains the resnet34 recipe (random
init) for one short epoch only to get a fold checkpoint, exports it to ONNX and times
:func:`saltseg.inference.pipeline.predict_folder` end to end (reading PNGs, inference, RLE,
writing submission.csv) with onnxruntime, and with torch eager unless ``--skip-torch``.

Run from the repository root: ``python bench/predict_full.py [--tiles 18000]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from saltseg.config import load_config
    from saltseg.data.synthetic import generate_dataset
    from saltseg.inference.onnx import export_run
    from saltseg.inference.pipeline import predict_folder
    from saltseg.training.kfold import train_kfold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=18000)
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "data", Path(tmp) / "run"
        generate_dataset(data, n_train=40, n_test=args.tiles, seed=1)
        overrides = [
            "model.pretrained=false",
            "trainer.epochs=1",
            "trainer.limit_train_batches=1",
            "data.k=2",
            "data.num_workers=0",
        ]
        config = load_config(ROOT / "configs" / "resnet34.yaml", overrides)
        train_kfold(config, run, data=data, folds=[0], progress=False)
        export_run(run)
        backends = ["onnx"] if args.skip_torch else ["onnx", "torch"]
        for backend in backends:
            start = time.perf_counter()
            summary = predict_folder(
                [run], data, Path(tmp) / f"out_{backend}", backend=backend, progress=False
            )
            seconds = time.perf_counter() - start
            rows.append((backend, summary["n_tiles"], seconds))
            print(f"{backend}: {summary['n_tiles']} tiles in {seconds:.0f} s", flush=True)

    table = "\n".join(
        f"| {backend} | {n} | {s / 60:.1f} min | {n / s:.1f} |" for backend, n, s in rows
    )
    body = f"""## Full test set through `saltseg predict` (`bench/predict_full.py`)

{args.tiles} synthetic test tiles, resnet34 recipe (scSE, hypercolumn, classifier; random init),
one fold, flip TTA, default batch 8, end to end (PNG reading, inference, post-processing, RLE,
submission.csv). Machine: {machine()}.

| backend | tiles | wall time | tiles/s |
| --- | --- | --- | --- |
{table}

Target: the full 18000-tile test set under 10 minutes on 2 cores.
"""
    write_section("predict_full", body)
    print(body)


if __name__ == "__main__":
    main()
