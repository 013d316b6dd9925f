"""Quality on real tiles: k-fold CV of saltseg recipes against a plain smp U-Net loop.

Every contender trains the same folds of the real labelled tiles (../shared/tgs-sample), made
once with :func:`saltseg.data.folds.make_folds` as ``saltseg folds`` makes them (``--k`` folds,
5 by default, seed 0, two depth bins), from random init, in this process with the same thread
count, taking turns fold by fold (so a slower spell of the machine hits every contender alike).
Each is scored on its out-of-fold (OOF) probabilities with the competition metric, at threshold
0.5 and after tuning the post-processing on the OOF with
:func:`saltseg.postprocess.tune_postprocess`.

- peer: ``segmentation_models_pytorch.Unet("resnet34", encoder_weights=None)`` in a plain loop:
  Adam 1e-3 with a one-cycle schedule, BCE + Dice, horizontal flips, batch 16, tiles
  reflect-padded 101 -> 128, a validation pass each epoch, flip TTA on the OOF; it keeps its
  last epoch.
- saltseg: each ``--recipe`` through :func:`saltseg.training.kfold.train_kfold`, with the shared
  folds (``data.folds_file``), ``model.pretrained=false``, ``trainer.epochs=--epochs`` and
  ``trainer.keep=last`` (the last epoch, as the peer: no epoch is chosen on the scored tiles;
  ``--keep best`` keeps the best validated epoch instead); its OOF are those ``train`` writes
  (flip TTA).

Per-epoch wall time is training plus validation (saltseg: ``epoch_seconds`` of the fold's
``metrics.csv``, checkpoint writing included); total wall time covers training, OOF prediction and
tuning. Run from the repository root, e.g.::

    python bench/real_quality.py --epochs 4 --threads 2 \\
        --recipe configs/resnet34.yaml --recipe configs/resnet34-cpu.yaml

A ``--recipe`` may carry its own overrides: ``--recipe "configs/resnet34.yaml optim.lr=0.01"``.
Smoke runs: ``--tiles 200 --folds 0 --epochs 1 --threads 1 --no-write``. ``--no-peer`` trains
the recipes alone and prints their scores (exploration; nothing is written).

A long run may be split: with ``--keep-runs DIR`` every contender's finished folds are recorded in
``DIR/bench_state.json`` (the peer's OOF in ``DIR/peer_fold<K>.npz``), and the same command with
``--resume`` added goes on from there: finished folds are read back, not trained again, and a fold
that an interrupted invocation left unfinished starts afresh. Every setting must match the first
invocation's; the section says on which machine each fold ran.
"""

from __future__ import annotations

import argparse
import json
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
from _results import link_labelled, machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "tgs-sample"
PAD = (13, 14, 13, 14)  # 101 -> 128


class State:
    """What a bench run has finished (``bench_state.json`` in its work folder): its settings, each
    contender's finished folds with their timings, and the invocations that trained them."""

    FILE = "bench_state.json"

    def __init__(self, work: Path, settings: dict[str, Any], resume: bool) -> None:
        self.path, self.resumed = work / self.FILE, resume
        if resume:
            if not self.path.is_file():
                sys.exit(f"--resume: {work} holds no {self.FILE} (no kept bench run to go on with)")
            self.data = json.loads(self.path.read_text())
            saved = self.data["settings"]
            differ = sorted(
                k for k in settings.keys() | saved.keys() if settings.get(k) != saved.get(k)
            )
            if differ:
                sys.exit(f"--resume: {', '.join(differ)} differ from the kept run's ({self.path})")
        else:
            if self.path.exists():
                sys.exit(f"{work} holds a bench run: add --resume to go on with it")
            if any(work.iterdir()):
                sys.exit(f"{work} is not empty: keep the runs in a new or empty folder")
            self.data = {"settings": settings, "folds": {}, "invocations": []}
        command = shlex.join(["python", "bench/real_quality.py", *sys.argv[1:]])
        self.data["invocations"].append({"machine": machine(), "command": command, "folds": []})

    def done(self, key: str, fold: int) -> dict[str, Any] | None:
        """The recorded facts of a contender's finished fold (None when not finished)."""
        return self.data["folds"].get(key, {}).get(str(fold))

    def record(self, key: str, fold: int, facts: dict[str, Any]) -> None:
        """Record a finished fold and save the state."""
        from saltseg.io import write_json

        self.data["folds"].setdefault(key, {})[str(fold)] = facts
        trained = self.data["invocations"][-1]["folds"]
        if fold not in trained:
            trained.append(fold)
        write_json(self.data, self.path)

    def machines(self) -> str:
        """Where the folds ran: one machine line, or one per invocation that trained folds."""
        runs = [i for i in self.data["invocations"] if i["folds"]]
        names = {i["machine"] for i in runs}
        if len(names) <= 1:
            return f"Machine: {names.pop() if names else machine()}."
        parts = [f"folds {','.join(map(str, i['folds']))}: {i['machine']}" for i in runs]
        return "Split over invocations (`--resume`); " + "; ".join(parts) + "."


@dataclass
class Result:
    """What one contender scored and cost."""

    name: str
    score: float
    tuned: float
    settings: str
    tuned_plain: float
    """Tuned without the peak gate (threshold, minimum area and classifier gate only)."""
    epoch_seconds: list[float]
    total_seconds: float
    notes: dict[str, Any] = field(default_factory=dict)


def subset_folder(data: Path, n: int, out: Path) -> Path:
    """A Kaggle-layout folder of ``n`` tiles of ``data`` drawn at random (seed 0), as symlinks."""
    ids = sorted(p.stem for p in (data / "train" / "images").glob("*.png"))
    if n >= len(ids):
        return data
    chosen = sorted(np.random.default_rng(0).choice(ids, n, replace=False))
    return link_labelled(data, chosen, out)


def tune(
    truth: np.ndarray, probs: np.ndarray, images: np.ndarray, cls: np.ndarray | None = None
) -> tuple[float, Any, float]:
    """Score at threshold 0.5, the post-processing tuned on these OOF probabilities, and the
    tuned score without the peak gate."""
    from saltseg.metrics import competition_metric
    from saltseg.postprocess import tune_postprocess

    pp = tune_postprocess(truth, probs, images, cls, base_threshold=0.5)
    plain = tune_postprocess(truth, probs, images, cls, base_threshold=0.5, peak_thresholds=(0,))
    return competition_metric(truth, probs > 0.5), pp, plain.info["oof_score_after"]


class Peer:
    """The plain smp loop; :meth:`fold` trains and predicts one fold."""

    name = "smp Unet(resnet34), plain loop (peer)"

    key = "peer"

    def __init__(
        self,
        tiles: Any,
        fold_of: np.ndarray,
        epochs: int,
        device: str,
        state: State,
        work: Path,
        seed: int = 42,
    ) -> None:
        import torch

        self.tiles, self.fold_of, self.epochs, self.device = tiles, fold_of, epochs, device
        self.state, self.work, self.seed = state, work, seed
        self.images = torch.from_numpy(tiles.images[:, None])
        self.masks = torch.from_numpy(tiles.masks[:, None].astype(np.float32))
        self.oof = np.zeros(tiles.masks.shape, np.float32)
        self.seen = np.zeros(len(tiles), bool)
        self.epoch_seconds: list[float] = []
        self.seconds = 0.0

    def _logits(self, model: Any, x: Any) -> Any:
        import torch.nn.functional as F

        return model(F.pad(x, PAD, mode="reflect"))[..., 13:-14, 13:-14]

    def _predict(self, model: Any, x: Any, flip: bool) -> np.ndarray:
        import torch

        model.eval()
        out = []
        with torch.inference_mode():
            for batch in x.split(64):
                batch = batch.to(self.device)
                p = torch.sigmoid(self._logits(model, batch))
                if flip:
                    p = (p + torch.sigmoid(self._logits(model, batch.flip(-1))).flip(-1)) / 2
                out.append(p[:, 0].cpu().numpy())
        return np.concatenate(out)

    def fold(self, fold: int) -> None:
        import segmentation_models_pytorch as smp
        import torch
        import torch.nn.functional as F

        from saltseg.io import atomic_path
        from saltseg.metrics import competition_metric

        saved = self.work / f"peer_fold{fold}.npz"
        if (facts := self.state.done(self.key, fold)) is not None and saved.is_file():
            self._restore(fold, saved, facts)
            return
        started = time.perf_counter()
        first_epoch = len(self.epoch_seconds)
        torch.manual_seed(self.seed + fold)
        rng = np.random.default_rng(self.seed + fold)
        fold_of, device = self.fold_of, self.device
        train, val = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
        model = smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=1).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        steps = len(train) // 16
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=1e-3, total_steps=self.epochs * steps
        )
        dice = smp.losses.DiceLoss("binary")
        for _ in range(self.epochs):
            start = time.perf_counter()
            model.train()
            order = rng.permutation(train)
            for step in range(steps):
                batch = order[step * 16 : (step + 1) * 16]
                x, y = self.images[batch].to(device), self.masks[batch].to(device)
                flip = torch.from_numpy(rng.random(len(batch)) < 0.5).to(device)
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                y = torch.where(flip[:, None, None, None], y.flip(-1), y)
                out = self._logits(model, x)
                loss = F.binary_cross_entropy_with_logits(out, y) + dice(out, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
            val_probs = self._predict(model, self.images[val], False)
            competition_metric(self.tiles.masks[val], val_probs > 0.5)
            self.epoch_seconds.append(time.perf_counter() - start)
        self.oof[val] = self._predict(model, self.images[val], True)
        self.seen[val] = True
        seconds = time.perf_counter() - started
        self.seconds += seconds
        with atomic_path(saved) as tmp:
            np.savez_compressed(tmp, ids=np.asarray(self.tiles.ids)[val], mask=self.oof[val])
        facts = {"epoch_seconds": self.epoch_seconds[first_epoch:], "seconds": seconds}
        self.state.record(self.key, fold, facts)

    def _restore(self, fold: int, saved: Path, facts: dict[str, Any]) -> None:
        """Read back a fold an earlier invocation finished."""
        val = np.flatnonzero(self.fold_of == fold)
        with np.load(saved, allow_pickle=False) as data:
            if list(data["ids"]) != [self.tiles.ids[i] for i in val]:
                sys.exit(f"--resume: {saved} holds other tiles than fold {fold}")
            self.oof[val] = data["mask"]
        self.seen[val] = True
        self.epoch_seconds += facts["epoch_seconds"]
        self.seconds += facts["seconds"]

    def fold_score(self, fold: int) -> float:
        """Competition metric at 0.5 of this fold's out-of-fold tiles."""
        from saltseg.metrics import competition_metric

        val = self.fold_of == fold
        return competition_metric(self.tiles.masks[val], self.oof[val] > 0.5)

    def result(self) -> Result:
        started = time.perf_counter()
        seen = self.seen
        score, pp, plain = tune(self.tiles.masks[seen], self.oof[seen], self.tiles.images[seen])
        self.seconds += time.perf_counter() - started
        return Result(
            self.name,
            score,
            pp.info["oof_score_after"],
            pp.describe(),
            plain,
            self.epoch_seconds,
            self.seconds,
        )


class Recipe:
    """One saltseg recipe through ``train_kfold`` on the shared folds, one fold per call."""

    def __init__(
        self,
        spec: str,
        overrides: list[str],
        data: Path,
        folds_file: Path,
        args: argparse.Namespace,
        out: Path,
        state: State,
    ) -> None:
        from saltseg.config import load_config

        path, *own = shlex.split(spec)
        fixed = [
            "model.pretrained=false",
            f"trainer.epochs={args.epochs}",
            f"trainer.seed={args.seed}",
            f"trainer.keep={args.keep}",
            f"data.k={args.k}",
            f"data.folds_file={folds_file}",
            f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
            "trainer.devices=1",
        ]
        self.config = load_config(path, [*fixed, *overrides, *own])
        self.name = "saltseg " + " ".join([Path(path).name, *overrides, *own])
        self.data, self.out, self.keep = data, out, args.keep_runs is not None
        self.state, self.key = state, out.name
        self.done: list[int] = []
        self.seconds = 0.0
        self._tiles: Any = None

    def fold(self, fold: int) -> None:
        from saltseg.runs import Run
        from saltseg.training.kfold import train_kfold

        run = Run(self.out)
        facts = self.state.done(self.key, fold)
        if facts is not None and run.fold_summary(fold) is not None:
            self.done.append(fold)  # an earlier invocation finished it
            self.seconds += facts["seconds"]
            return
        # Only a kept bench run (its bench_state.json) is gone on with: a fold an interrupted
        # invocation left unfinished starts afresh. A fresh invocation never touches a run in
        # the way: train_kfold refuses it.
        kept = self.state.resumed and Run.is_run(self.out)
        if kept and run.fold_dir(fold).exists():
            shutil.rmtree(run.fold_dir(fold))
        started = time.perf_counter()
        resume = bool(self.done) or kept  # later folds join the run the first one made
        train_kfold(
            self.config, self.out, data=self.data, folds=[fold], resume=resume, progress=False
        )
        self.done.append(fold)
        seconds = time.perf_counter() - started
        self.seconds += seconds
        self.state.record(self.key, fold, {"seconds": seconds})

    def tiles(self) -> Any:
        """The labelled tiles, read once."""
        from saltseg.data.tgs import load_dataset

        if self._tiles is None:
            self._tiles = load_dataset(self.data, "train")
        return self._tiles

    def fold_score(self, fold: int) -> float:
        """Competition metric at 0.5 of this fold's out-of-fold tiles."""
        from saltseg.metrics import competition_metric
        from saltseg.runs import Run, oof_rows

        oof = Run(self.out).oof()
        mine = np.flatnonzero(np.asarray(oof["fold"]) == fold)
        tiles = self.tiles()
        rows = oof_rows([oof["ids"][i] for i in mine], tiles)
        return competition_metric(tiles.masks[rows], oof["mask"][mine] > 0.5)

    def result(self) -> Result:
        from saltseg.runs import Run, oof_rows

        started = time.perf_counter()
        run = Run(self.out)
        epoch_seconds = []
        for fold in self.done:
            metrics = pd.read_csv(run.metrics_path(fold))
            epoch_seconds += metrics["epoch_seconds"].dropna().tolist()
        oof = run.oof()
        tiles = self.tiles()
        rows = oof_rows(oof["ids"], tiles)
        score, pp, plain = tune(tiles.masks[rows], oof["mask"], tiles.images[rows], oof.get("cls"))
        notes = {"num_workers": self.config.data.num_workers, "batch": self.config.data.batch_size}
        if not self.keep:
            shutil.rmtree(self.out)
        return Result(
            self.name,
            score,
            pp.info["oof_score_after"],
            pp.describe(),
            plain,
            epoch_seconds,
            self.seconds + time.perf_counter() - started,
            notes,
        )


def render(
    results: list[Result], args: argparse.Namespace, n_tiles: int, n_oof: int, where: str
) -> str:
    """The RESULTS.md section."""
    peer = results[0]
    rows = []
    for r in results:
        name = r.name
        if r.notes:
            name += f" (batch {r.notes['batch']}, {r.notes['num_workers']} loader workers)"
        per_epoch = float(np.median(r.epoch_seconds))  # a busy spell of the machine moves it less
        ratio = per_epoch / float(np.median(peer.epoch_seconds))
        rows.append(
            f"| {name} | {r.score:.4f} | {r.tuned:.4f} ({r.settings}) | {r.tuned_plain:.4f} | "
            f"{per_epoch:.1f} | "
            f"{ratio:.2f}x | {r.total_seconds:.0f} | {r.score - peer.score:+.4f} / "
            f"{r.tuned - peer.tuned:+.4f} |"
        )
    folds = ",".join(map(str, args.folds)) if args.folds else f"all {args.k}"
    command = shlex.join(["python", "bench/real_quality.py", *sys.argv[1:]])
    keep_text = (
        "its last epoch too"
        if args.keep == "last"
        else "its best epoch by validation score (chosen on the same tiles it is scored on)"
    )
    header = (
        "| contender | OOF mAP @0.5 | OOF mAP tuned (settings) | tuned without peak gate | "
        "median s/epoch (train + val) | vs peer | total s | vs peer (@0.5 / tuned) |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    table = "\n".join([header, *rows])
    return f"""## Quality on real tiles, {args.epochs} epochs (`bench/real_quality.py`)

`{command}`

{n_tiles} real labelled tiles, folds from `make_folds` as `saltseg folds` makes them (k={args.k},
seed 0), folds {folds}: {n_oof} out-of-fold tiles scored. Random init, {args.epochs} epochs,
training seed {args.seed} + fold for every contender, the contenders taking turns fold by fold in
one process, {args.threads} torch thread(s), device {args.device}.
Competition metric on the out-of-fold predictions (flip TTA) at threshold 0.5, and after tuning
threshold / minimum area / peak gate / classifier gate on them (the same tuner for every
contender; also without the peak gate). The peer keeps its last epoch; saltseg keeps
{keep_text}.
{where}

{table}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SAMPLE, help="Kaggle-layout data folder")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--k", type=int, default=5, help="number of folds (every tile scored once)")
    parser.add_argument("--folds", type=str, default=None, help="fold indices to run, e.g. 0,1")
    parser.add_argument("--tiles", type=int, default=None, help="subsample N tiles (smoke runs)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--seed",
        type=int,
        default=42,
        help="training seed of every contender (fold f trains with seed + f); the folds stay put",
    )
    parser.add_argument(
        "--recipe",
        action="append",
        default=None,
        help='recipe YAML, optionally with overrides: "configs/resnet34.yaml optim.lr=0.01"',
    )
    parser.add_argument("--set", action="append", default=[], help="override for every recipe")
    parser.add_argument(
        "--keep",
        choices=["last", "best"],
        default="last",
        help="saltseg's kept epoch (trainer.keep); the peer always keeps its last",
    )
    parser.add_argument("--no-write", action="store_true", help="print, leave RESULTS.md alone")
    parser.add_argument(
        "--section",
        default=None,
        help="RESULTS.md section to rewrite (default real_quality_<epochs>ep)",
    )
    parser.add_argument(
        "--no-peer",
        action="store_true",
        help="exploration: train the recipes only, print their scores, write nothing",
    )
    parser.add_argument("--keep-runs", type=Path, default=None, help="keep the run folders here")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on with the bench run kept in --keep-runs (same settings): finished folds are "
        "read back, not trained again",
    )
    args = parser.parse_args()
    if args.resume and args.keep_runs is None:
        sys.exit("--resume needs --keep-runs: the folder of the run to go on with")
    args.folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    recipes = args.recipe or [str(ROOT / "configs" / "resnet34-cpu.yaml")]

    import torch

    from saltseg.data.folds import make_folds, write_folds
    from saltseg.data.tgs import load_dataset

    if not (args.data / "train" / "images").is_dir():
        sys.exit(f"no labelled tiles at {args.data}")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="real_quality_") as tmp:
        work = args.keep_runs or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        settings = {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
            if key not in ("folds", "no_write", "section", "keep_runs", "resume")
        }
        settings["recipe"] = recipes
        state = State(work, settings, args.resume)
        data = args.data
        if args.tiles:
            subset = work / "data"
            kept = args.resume and subset.is_dir()
            data = subset if kept else subset_folder(args.data, args.tiles, subset)
        tiles = load_dataset(data, "train")
        frame = make_folds(
            tiles.ids, tiles.masks, k=args.k, seed=0, depths=tiles.depths, depth_bins=2
        )
        folds_file = work / "folds.csv"
        write_folds(frame, folds_file)
        fold_of = frame.set_index("id").loc[tiles.ids, "fold"].to_numpy()
        folds = args.folds if args.folds is not None else list(range(args.k))
        contenders: list[Any] = []
        if not args.no_peer:
            peer = Peer(tiles, fold_of, args.epochs, args.device, state, work, args.seed)
            contenders.append(peer)
        for i, spec in enumerate(recipes):
            out = work / f"run_{i}"
            contenders.append(Recipe(spec, args.set, data, folds_file, args, out, state))
        # Fold by fold, the contenders in turn: a slower spell of the machine hits them alike.
        for fold in folds:
            for contender in contenders:
                contender.fold(fold)
                score = contender.fold_score(fold)
                print(f"fold {fold}: {contender.name} done, mAP @0.5 {score:.4f}", flush=True)
        results = [contender.result() for contender in contenders]
        for result in results:
            seconds = " ".join(f"{s:.0f}" for s in result.epoch_seconds)
            scores = f"{result.score:.4f} / tuned {result.tuned:.4f}"
            print(f"{result.name}: {scores}; s/epoch {seconds}", flush=True)
    if args.no_peer:
        return  # no side-by-side comparison to record
    body = render(results, args, len(tiles), int(np.isin(fold_of, folds).sum()), state.machines())
    print(body)
    if not args.no_write:
        section = args.section or f"real_quality_{args.epochs}ep"
        write_section(section, body)


if __name__ == "__main__":
    main()
