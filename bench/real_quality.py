"""Quality on real tiles: k-fold CV of saltseg recipes against a plain smp U-Net loop.

Every contender trains the same folds of the real labelled tiles (../shared/tgs-sample), made
once with :func:`saltseg.data.folds.make_folds` as ``saltseg folds`` makes them (k=5, seed 0,
two depth bins), from random init, one after another in this process with the same thread
count. Each is scored on its out-of-fold (OOF) probabilities with the competition metric, at
threshold 0.5 and after tuning the post-processing on the OOF with
:func:`saltseg.postprocess.tune_postprocess`.

- peer: ``segmentation_models_pytorch.Unet("resnet34", encoder_weights=None)`` in a plain loop:
  Adam 1e-3 with a one-cycle schedule, BCE + Dice, horizontal flips, batch 16, tiles
  reflect-padded 101 -> 128, a validation pass each epoch, flip TTA on the OOF; it keeps its
  last epoch.
- saltseg: each ``--recipe`` through :func:`saltseg.training.kfold.train_kfold`, with the shared
  folds (``data.folds_file``), ``model.pretrained=false``, ``trainer.epochs=--epochs``; its OOF
  are those ``train`` writes (best epoch by validation score, flip TTA).

Per-epoch wall time is training plus validation (saltseg: ``epoch_seconds`` of the fold's
``metrics.csv``, checkpoint writing included); total wall time covers training, OOF prediction and
tuning. Run from the repository root, e.g.::

    python bench/real_quality.py --epochs 4 --threads 2 \\
        --recipe configs/resnet34.yaml --recipe configs/resnet34-cpu.yaml

A ``--recipe`` may carry its own overrides: ``--recipe "configs/resnet34.yaml optim.lr=0.01"``.
Smoke runs: ``--tiles 200 --folds 0 --epochs 1 --threads 1 --no-write``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "tgs-sample"
K = 5
PAD = (13, 14, 13, 14)  # 101 -> 128


@dataclass
class Result:
    """What one contender scored and cost."""

    name: str
    score: float
    tuned: float
    settings: str
    epoch_seconds: list[float]
    total_seconds: float
    notes: dict[str, Any] = field(default_factory=dict)


def subset_folder(data: Path, n: int, out: Path) -> Path:
    """A Kaggle-layout folder of ``n`` tiles of ``data`` drawn at random (seed 0), as symlinks."""
    ids = sorted(p.stem for p in (data / "train" / "images").glob("*.png"))
    if n >= len(ids):
        return data
    chosen = sorted(np.random.default_rng(0).choice(ids, n, replace=False))
    for kind in ("images", "masks"):
        (out / "train" / kind).mkdir(parents=True)
        for tile_id in chosen:
            src = (data / "train" / kind / f"{tile_id}.png").resolve()
            (out / "train" / kind / f"{tile_id}.png").symlink_to(src)
    for name in ("train.csv", "depths.csv"):
        if (data / name).exists():
            (out / name).symlink_to((data / name).resolve())
    return out


def tune(
    truth: np.ndarray, probs: np.ndarray, images: np.ndarray, cls: np.ndarray | None = None
) -> tuple[float, Any]:
    """Score at threshold 0.5 and the post-processing tuned on these OOF probabilities."""
    from saltseg.metrics import competition_metric
    from saltseg.postprocess import tune_postprocess

    pp = tune_postprocess(truth, probs, images, cls, base_threshold=0.5)
    return competition_metric(truth, probs > 0.5), pp


def run_peer(tiles: Any, fold_of: np.ndarray, folds: list[int], epochs: int, device: str) -> Result:
    """The plain smp loop, fold after fold."""
    import segmentation_models_pytorch as smp
    import torch
    import torch.nn.functional as F

    from saltseg.metrics import competition_metric

    def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(F.pad(x, PAD, mode="reflect"))[..., 13:-14, 13:-14]

    def predict(model: torch.nn.Module, x: torch.Tensor, flip: bool) -> np.ndarray:
        model.eval()
        out = []
        with torch.inference_mode():
            for batch in x.split(64):
                batch = batch.to(device)
                p = torch.sigmoid(logits(model, batch))
                if flip:
                    p = (p + torch.sigmoid(logits(model, batch.flip(-1))).flip(-1)) / 2
                out.append(p[:, 0].cpu().numpy())
        return np.concatenate(out)

    started = time.perf_counter()
    images = torch.from_numpy(tiles.images[:, None])
    masks = torch.from_numpy(tiles.masks[:, None].astype(np.float32))
    oof = np.zeros(tiles.masks.shape, np.float32)
    seen = np.zeros(len(tiles), bool)
    epoch_seconds = []
    for fold in folds:
        torch.manual_seed(42 + fold)
        rng = np.random.default_rng(42 + fold)
        train, val = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
        model = smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=1).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        steps = len(train) // 16
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=1e-3, total_steps=epochs * steps
        )
        dice = smp.losses.DiceLoss("binary")
        for _ in range(epochs):
            start = time.perf_counter()
            model.train()
            order = rng.permutation(train)
            for step in range(steps):
                batch = order[step * 16 : (step + 1) * 16]
                x, y = images[batch].to(device), masks[batch].to(device)
                flip = torch.from_numpy(rng.random(len(batch)) < 0.5).to(device)
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                y = torch.where(flip[:, None, None, None], y.flip(-1), y)
                out = logits(model, x)
                loss = F.binary_cross_entropy_with_logits(out, y) + dice(out, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
            competition_metric(tiles.masks[val], predict(model, images[val], False) > 0.5)
            epoch_seconds.append(time.perf_counter() - start)
        oof[val] = predict(model, images[val], True)
        seen[val] = True
    score, pp = tune(tiles.masks[seen], oof[seen], tiles.images[seen])
    return Result(
        "smp Unet(resnet34), plain loop (peer)",
        score,
        pp.info["oof_score_after"],
        pp.describe(),
        epoch_seconds,
        time.perf_counter() - started,
    )


def run_recipe(
    spec: str,
    overrides: list[str],
    data: Path,
    folds_file: Path,
    folds: list[int],
    epochs: int,
    device: str,
    work: Path,
    keep: bool,
) -> Result:
    """One saltseg recipe through ``train_kfold`` on the shared folds."""
    from saltseg.config import load_config
    from saltseg.data.tgs import load_dataset
    from saltseg.runs import Run, oof_rows
    from saltseg.training.kfold import train_kfold

    path, *own = shlex.split(spec)
    fixed = [
        "model.pretrained=false",
        f"trainer.epochs={epochs}",
        f"data.k={K}",
        f"data.folds_file={folds_file}",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        "trainer.devices=1",
    ]
    config = load_config(path, [*fixed, *overrides, *own])
    name = " ".join([Path(path).name, *overrides, *own])
    out = work / f"run_{len(list(work.glob('run_*')))}"
    started = time.perf_counter()
    train_kfold(config, out, data=data, folds=folds, progress=False)
    total = time.perf_counter() - started
    run = Run(out)
    epoch_seconds = []
    for fold in folds:
        metrics = pd.read_csv(run.metrics_path(fold))
        epoch_seconds += metrics["epoch_seconds"].dropna().tolist()
    oof = run.oof()
    tiles = load_dataset(data, "train")
    rows = oof_rows(oof["ids"], tiles)
    score, pp = tune(tiles.masks[rows], oof["mask"], tiles.images[rows], oof.get("cls"))
    notes = {"num_workers": config.data.num_workers, "batch": config.data.batch_size}
    if not keep:
        shutil.rmtree(out)
    return Result(
        f"saltseg {name}",
        score,
        pp.info["oof_score_after"],
        pp.describe(),
        epoch_seconds,
        total,
        notes,
    )


def render(results: list[Result], args: argparse.Namespace, n_tiles: int, n_oof: int) -> str:
    """The RESULTS.md section."""
    peer = results[0]
    rows = []
    for r in results:
        name = r.name
        if r.notes:
            name += f" (batch {r.notes['batch']}, {r.notes['num_workers']} loader workers)"
        per_epoch = float(np.mean(r.epoch_seconds))
        ratio = per_epoch / float(np.mean(peer.epoch_seconds))
        rows.append(
            f"| {name} | {r.score:.4f} | {r.tuned:.4f} ({r.settings}) | {per_epoch:.1f} | "
            f"{ratio:.2f}x | {r.total_seconds:.0f} | {r.score - peer.score:+.4f} / "
            f"{r.tuned - peer.tuned:+.4f} |"
        )
    folds = ",".join(map(str, args.folds)) if args.folds else f"all {K}"
    command = shlex.join(["python", "bench/real_quality.py", *sys.argv[1:]])
    header = (
        "| contender | OOF mAP @0.5 | OOF mAP tuned (settings) | s/epoch (train + val) | "
        "vs peer | total s | vs peer (@0.5 / tuned) |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    table = "\n".join([header, *rows])
    return f"""## Quality on real tiles, {args.epochs} epochs (`bench/real_quality.py`)

`{command}`

{n_tiles} real labelled tiles, folds from `make_folds` as `saltseg folds` makes them (k={K},
seed 0), folds {folds}: {n_oof} out-of-fold tiles scored. Random init, {args.epochs} epochs, one
contender after another in one process, {args.threads} torch thread(s), device {args.device}.
Competition metric on the out-of-fold predictions (flip TTA) at threshold 0.5, and after tuning
threshold / minimum area / classifier gate on them. The peer keeps its last epoch, saltseg its
best epoch by validation score (chosen on the same tiles it is scored on).
Machine: {machine()}.

{table}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SAMPLE, help="Kaggle-layout data folder")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--folds", type=str, default=None, help="fold indices to run, e.g. 0,1")
    parser.add_argument("--tiles", type=int, default=None, help="subsample N tiles (smoke runs)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--recipe",
        action="append",
        default=None,
        help='recipe YAML, optionally with overrides: "configs/resnet34.yaml optim.lr=0.01"',
    )
    parser.add_argument("--set", action="append", default=[], help="override for every recipe")
    parser.add_argument("--no-write", action="store_true", help="print, leave RESULTS.md alone")
    parser.add_argument("--keep-runs", type=Path, default=None, help="keep the run folders here")
    args = parser.parse_args()
    args.folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    recipes = args.recipe or [str(ROOT / "configs" / "resnet34.yaml")]

    import torch

    from saltseg.data.folds import make_folds, write_folds
    from saltseg.data.tgs import load_dataset

    if not (args.data / "train" / "images").is_dir():
        sys.exit(f"no labelled tiles at {args.data}")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="real_quality_") as tmp:
        work = args.keep_runs or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = args.data
        if args.tiles:
            data = subset_folder(args.data, args.tiles, Path(tmp) / "data")
        tiles = load_dataset(data, "train")
        frame = make_folds(tiles.ids, tiles.masks, k=K, seed=0, depths=tiles.depths, depth_bins=2)
        folds_file = work / "folds.csv"
        write_folds(frame, folds_file)
        fold_of = frame.set_index("id").loc[tiles.ids, "fold"].to_numpy()
        folds = args.folds if args.folds is not None else list(range(K))
        results = [run_peer(tiles, fold_of, folds, args.epochs, args.device)]
        print(f"{results[-1].name}: {results[-1].score:.4f}", flush=True)
        for spec in recipes:
            results.append(
                run_recipe(
                    spec,
                    args.set,
                    data,
                    folds_file,
                    folds,
                    args.epochs,
                    args.device,
                    work,
                    args.keep_runs is not None,
                )
            )
            print(f"{results[-1].name}: {results[-1].score:.4f}", flush=True)
    body = render(results, args, len(tiles), int(np.isin(fold_of, folds).sum()))
    print(body)
    if not args.no_write:
        section = f"real_quality_{args.epochs}ep"
        write_section(section, body)


if __name__ == "__main__":
    main()
