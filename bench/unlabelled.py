"""Learning from unlabelled tiles: pretraining and self-training against random init.

On the real sample (../shared/tgs-sample: 2000 labelled tiles in train/, 6000 unlabelled in test/)
500 labelled tiles are held back (seed 0) and only scored. From the other 1500, the first N of a
seeded shuffle are the labelled training tiles, for each N of ``--labelled`` (nested sets). The
resnet34 CPU recipe (``configs/resnet34-cpu.yaml``, ``model.pretrained=false``) is trained by
``train_kfold`` (k folds, ``--epochs`` epochs per labelled count, the same folds for every
contender) from:

- random init;
- each ``--methods`` pretraining file (``saltseg.pretrain``), pretrained once on the unlabelled
  tiles (``--unlabelled`` of them, seeded) for ``--pretrain-epochs``, loaded with
  ``model.pretrained=FILE`` (mim: encoder and decoder; vicregl, simclr: encoder);
- one self-training round (``saltseg.selftrain``) from the random-init run: its fold ensemble
  pseudo-labels ``--self-ratio`` x N of the unlabelled tiles (flip TTA, its tuned
  post-processing, the confidence rule of ``--band``/``--max-uncertain``), then the same recipe
  and folds on the labelled plus the pseudo-labelled tiles, with the epochs scaled by
  N / (N + pseudo pool) so that it takes no more optimizer steps than the others.

Every run's fold ensemble predicts the 500 held-out tiles (flip TTA) and is scored with the
competition metric at threshold 0.5. Pretraining runs once per method, shared by every N, and
its cost is reported on its own. All in one process, one contender after another, with the same
thread count. Run from the repository root, e.g.::

    python bench/unlabelled.py --threads 2 --epochs 16,4 --pretrain-epochs 3 --labelled 100,1000

Smoke run: ``--labelled 100 --unlabelled 200 --epochs 1 --pretrain-epochs 1 --no-write``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import link_labelled, machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "tgs-sample"
RECIPE = ROOT / "configs" / "resnet34-cpu.yaml"
HELD_OUT = 500


def link_unlabelled(data: Path, ids: list[str], out: Path) -> Path:
    """A plain folder of the unlabelled tiles ``ids`` of ``data/test/images``, as symlinks."""
    out.mkdir(parents=True)
    for tile_id in ids:
        (out / f"{tile_id}.png").symlink_to((data / "test" / "images" / f"{tile_id}.png").resolve())
    return out


def held_out_score(run: Path, tiles: Any) -> float:
    """Competition metric at 0.5 of the run's fold ensemble (flip TTA) on ``tiles``."""
    from saltseg.inference.ensemble import Ensemble
    from saltseg.metrics import competition_metric

    probs = Ensemble.load([run]).predict(tiles.images, tiles.depths)["mask"]
    return competition_metric(tiles.masks, probs > 0.5)


def train(config: Any, data: Path, out: Path) -> tuple[Path, float]:
    """One k-fold run; returns its folder and wall time."""
    from saltseg.training.kfold import train_kfold

    started = time.perf_counter()
    train_kfold(config, out, data=data, progress=False)
    return out, time.perf_counter() - started


def render(rows: list[dict[str, Any]], pretrained: list[dict[str, Any]], args, n_unl: int) -> str:
    """The RESULTS.md section."""
    table = [
        "| labelled tiles | init | held-out mAP @0.5 | vs random | fine-tune s | notes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    base = {r["labelled"]: r["score"] for r in rows if r["init"] == "random"}
    for r in rows:
        score = "n/a" if r["score"] is None else f"{r['score']:.4f}"
        delta = "" if r["score"] is None else f"{r['score'] - base[r['labelled']]:+.4f}"
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
        table.append(
            f"| {r['labelled']} | {r['init']} | {score} | {delta} | {seconds} | {r['notes']} |"
        )
    cost = [
        "| method | trains | images | epochs | steps | s | loss first -> last epoch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in pretrained:
        parts = "encoder + decoder" if p["decoder_trained"] else "encoder"
        cost.append(
            f"| {p['method']} | {parts} | {p['images']} | {p['epochs']} | {p['steps']} | "
            f"{p['seconds']:.0f} | {p['losses'][0]:.4f} -> {p['losses'][-1]:.4f} |"
        )
    command = shlex.join(["python", "bench/unlabelled.py", *sys.argv[1:]])
    epochs = ", ".join(f"{e} at {n} labelled" for n, e in args.epochs_of.items())
    return f"""## Learning from unlabelled tiles (`bench/unlabelled.py`)

`{command}`

Real sample: {HELD_OUT} labelled tiles held back (seed 0) and scored with the competition metric
at threshold 0.5 (fold ensemble, flip TTA); the labelled training tiles are the first N of a
seeded shuffle of the other {2000 - HELD_OUT}. `configs/resnet34-cpu.yaml` with
`model.pretrained=false`, {args.k} folds, {epochs} epoch(s) for every contender, from random
init, from each pretraining file, and after one self-training round (pseudo-labels of
{args.self_ratio:g} x N of the unlabelled tiles by the random-init run, band {args.band}, at most
{args.max_uncertain:.0%} uncertain pixels; epochs scaled by N / (N + that pool), so no more
optimizer steps than the others). Pretraining on the
{n_unl} unlabelled test tiles, {args.pretrain_epochs} epoch(s), batch {args.pretrain_batch},
cost below. {args.threads} torch thread(s), device {args.device}.
Machine: {machine()}.

{chr(10).join(table)}

Pretraining cost (once per method, shared by every N):

{chr(10).join(cost)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SAMPLE, help="Kaggle-layout data folder")
    parser.add_argument(
        "--epochs",
        type=str,
        default="4",
        help="fine-tuning epochs: one value, or one per --labelled count (e.g. 16,4)",
    )
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument("--pretrain-batch", type=int, default=64)
    parser.add_argument("--labelled", type=str, default="100,1000", help="labelled tile counts")
    parser.add_argument("--methods", type=str, default="mim,vicregl,simclr")
    parser.add_argument("--unlabelled", type=int, default=None, help="subsample N unlabelled")
    parser.add_argument("--k", type=int, default=3, help="folds of every fine-tuning run")
    parser.add_argument(
        "--self-ratio", type=float, default=1.0, help="unlabelled tiles per labelled tile"
    )
    parser.add_argument("--band", type=str, default="0.2,0.8")
    parser.add_argument("--max-uncertain", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--no-write", action="store_true", help="print, leave RESULTS.md alone")
    parser.add_argument("--keep-runs", type=Path, default=None, help="keep the runs here")
    args = parser.parse_args()
    sizes = [int(n) for n in args.labelled.split(",")]
    epochs = [int(e) for e in args.epochs.split(",")]
    if len(epochs) == 1:
        epochs *= len(sizes)
    if len(epochs) != len(sizes):
        sys.exit(f"--epochs has {len(epochs)} values for {len(sizes)} --labelled counts")
    args.epochs_of = dict(zip(sizes, epochs, strict=True))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    band = tuple(float(v) for v in args.band.split(","))

    import torch

    from saltseg.config import load_config
    from saltseg.data.tgs import load_dataset
    from saltseg.errors import SaltsegError
    from saltseg.pretrain import ImageSet, pretrain_images, save_pretrain
    from saltseg.selftrain import self_train

    if not (args.data / "test" / "images").is_dir():
        sys.exit(f"no unlabelled tiles at {args.data}/test/images")
    torch.set_num_threads(args.threads)
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    labelled = load_dataset(args.data, "train")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labelled))
    held_out = labelled.subset(np.sort(order[:HELD_OUT]))
    pool = [labelled.ids[i] for i in order[HELD_OUT:]]
    if max(sizes) > len(pool):
        sys.exit(f"--labelled {max(sizes)} but only {len(pool)} tiles outside the held-out set")
    test = load_dataset(args.data, "test")
    if args.unlabelled is not None and args.unlabelled < len(test):
        test = test.subset(
            np.sort(np.random.default_rng(1).permutation(len(test))[: args.unlabelled])
        )

    with tempfile.TemporaryDirectory(prefix="unlabelled_") as tmp:
        work = args.keep_runs or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        unlabelled = link_unlabelled(args.data, test.ids, work / "unlabelled")
        images = ImageSet(
            test.images, test.depths, [{"folder": str(unlabelled), "images": len(test)}]
        )
        base = load_config(RECIPE, ["model.pretrained=false", f"trainer.accelerator={accelerator}"])
        pretrained: list[dict[str, Any]] = []
        files: dict[str, Path] = {}
        for method in methods:
            payload = pretrain_images(
                base,
                images,
                method,
                args.pretrain_epochs,
                batch_size=args.pretrain_batch,
                device=args.device,
                progress=False,
            )
            files[method] = save_pretrain(payload, work / f"{method}.pt")
            pretrained.append({k: v for k, v in payload.items() if k not in ("encoder", "decoder")})
            print(f"pretrained {method}: {payload['seconds']:.0f}s", flush=True)

        rows: list[dict[str, Any]] = []

        def report(n: int, init: str, run: Path | None, seconds: float | None, notes: str = ""):
            score = None if run is None else held_out_score(run, held_out)
            rows.append({"labelled": n, "init": init, "score": score, "seconds": seconds})
            rows[-1]["notes"] = notes
            print(rows[-1], flush=True)
            if not args.no_write:  # keep what is measured should a later contender fail
                partial = f"Partial: {len(rows)} row(s) measured so far; the run goes on.\n\n"
                write_section("unlabelled", partial + render(rows, pretrained, args, len(test)))

        for n in sizes:
            data = link_labelled(args.data, pool[:n], work / f"labelled_{n}")
            fixed = [f"trainer.epochs={args.epochs_of[n]}", f"data.k={args.k}"]
            config = load_config(
                RECIPE, ["model.pretrained=false", f"trainer.accelerator={accelerator}", *fixed]
            )
            random_run, seconds = train(config, data, work / f"random_{n}")
            report(n, "random", random_run, seconds)
            for method, path in files.items():
                model = config.model.model_copy(update={"pretrained": str(path)})
                run, seconds = train(
                    config.model_copy(update={"model": model}), data, work / f"{method}_{n}"
                )
                report(n, f"{method} pretraining", run, seconds)
            started = time.perf_counter()
            name = "self-training round 1 (from random)"
            pool_size = min(len(test), max(1, round(args.self_ratio * n)))
            pool_dir = link_unlabelled(args.data, test.ids[:pool_size], work / f"pool_{n}")
            self_epochs = max(1, round(args.epochs_of[n] * n / (n + pool_size)))
            try:
                summary = self_train(
                    random_run,
                    pool_dir,
                    1,
                    work / f"self_{n}",
                    data=data,
                    band=band,
                    max_uncertain=args.max_uncertain,
                    progress=False,
                    overrides=[f"trainer.epochs={self_epochs}"],
                )
            except SaltsegError as err:
                report(n, name, None, None, str(err))
            else:
                done = summary["finished"][0]
                notes = (
                    f"{done['pseudo_tiles']} of {done['unlabelled_tiles']} unlabelled tiles "
                    f"pseudo-labelled; {self_epochs} epoch(s); s include their prediction"
                )
                report(n, name, Path(done["run"]), time.perf_counter() - started, notes)
    body = render(rows, pretrained, args, len(test))
    print(body)
    if not args.no_write:
        write_section("unlabelled", body)


if __name__ == "__main__":
    main()
