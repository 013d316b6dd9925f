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
- ``--rounds`` self-training rounds (``saltseg.selftrain``), one row each: round 1 from each
  run of ``--self-from`` (random init by default, or a pretraining method's run), each later
  round from the round before. The source run's fold ensemble pseudo-labels ``--self-ratio``
  x N of the unlabelled tiles (flip TTA, its tuned post-processing, the confidence rule of
  ``--band``/``--max-uncertain``, or of ``--share``: the most confident share of the tiles
  predicted with salt and of those predicted empty), then the same recipe and folds on the
  labelled plus the pseudo-labelled tiles, with the epochs scaled by N / (N + pseudo-labelled
  tiles) (``self_train(same_steps=True)``), so that it takes about as many optimizer steps as
  the others.

``--seeds`` repeats every training of a row with ``trainer.seed`` 42, 43, ... (the same folds
and tiles) and scores the row with their mean: with a hundred labelled tiles one run's score
moves by a few hundredths with the seed alone.

``--finetune`` adds recipe overrides to the runs that start from a pretraining file (and so to
the self-training rounds from them), e.g. ``optim.encoder_lr_mult=0.3`` to fine-tune the
pretrained encoder more gently than the decoder; its rows name them.

Every run's fold ensemble predicts the 500 held-out tiles (flip TTA) and is scored with the
competition metric at threshold 0.5. Pretraining runs once per method, shared by every N, and
its cost is reported on its own. All in one process, one contender after another, with the same
thread count. Run from the repository root, e.g.::

    python bench/unlabelled.py --threads 2 --epochs 16,4 --pretrain-epochs 3 --labelled 100,1000

Smoke run: ``--labelled 100 --unlabelled 200 --epochs 1 --pretrain-epochs 1 --no-write``.
"""

from __future__ import annotations

import argparse
import json
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
ORDER = ["random", "mim", "vicregl", "simclr", "self-training"]
SEED = 42  # trainer.seed of the recipe: the first seed of every row


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


def render(
    rows: list[dict[str, Any]],
    pretrained: list[dict[str, Any]],
    args,
    n_unl: int,
    commands: list[str],
    n_labelled: int,
) -> str:
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
    command = "\n\n".join(f"`{c}`" for c in commands)
    if len(commands) > 1:
        command += (
            "\n\n(later invocations reused the pretraining files and scored rows of earlier ones)"
        )
    epochs = ", ".join(f"{e} at {n} labelled" for n, e in args.epochs_of.items())
    repeats = [f"{s} at {n}" for n, s in args.seeds_of.items() if s > 1]
    if repeats:
        repeats_text = (
            f"\nTraining seeds per row (trainer.seed from 42, the same folds; the row's score "
            f"their mean): {', '.join(repeats)} labelled."
        )
    else:
        repeats_text = ""
    if pretrained:
        setting = (
            f"Pretraining on the\n{n_unl} unlabelled test tiles, {args.pretrain_epochs} epoch(s), "
            f"batch {args.pretrain_batch},\ncost below."
        )
        cost_text = "\n\nPretraining cost (once per method, shared by every N):\n\n"
        cost_text += "\n".join(cost)
    else:
        setting, cost_text = "No pretraining method in this run.", ""
    return f"""## Learning from unlabelled tiles, {n_unl} of them (`bench/unlabelled.py`)

{command}

Real sample: {HELD_OUT} labelled tiles held back (seed 0) and scored with the competition metric
at threshold 0.5 (fold ensemble, flip TTA); the labelled training tiles are the first N of a
seeded shuffle of the other {n_labelled - HELD_OUT}. `configs/resnet34-cpu.yaml` with
`model.pretrained=false`, {args.k} folds, {epochs} epoch(s) for every contender, from random
init, from each pretraining file, and after self-training rounds (pseudo-labels of
{args.self_ratio:g} x N of the unlabelled tiles by the run named in the row for round 1, by the
round before for a later round; confidence rule in its notes; epochs scaled by
N / (N + pseudo-labelled tiles), so about as many optimizer steps as the others).
{setting} {args.threads} torch thread(s), device {args.device}.{repeats_text}
Machine: {machine()}.

{chr(10).join(table)}{cost_text}
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
        "--self-ratio", type=float, default=2.0, help="unlabelled tiles per labelled tile"
    )
    parser.add_argument("--band", type=str, default="0.2,0.8")
    parser.add_argument("--max-uncertain", type=float, default=0.02)
    parser.add_argument(
        "--share",
        type=float,
        default=None,
        help="self-training keeps this share of the salt and of the empty tiles (not the max)",
    )
    parser.add_argument(
        "--self-from",
        type=str,
        default="random",
        help="runs that self-train: random and/or pretraining methods, e.g. random,simclr",
    )
    parser.add_argument(
        "--seeds",
        type=str,
        default="1",
        help="training seeds per row (from the recipe's 42 up), its score their mean: one value, "
        "or one per --labelled count (e.g. 3,1)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="self-training rounds, each from the run of the round before (one row each)",
    )
    parser.add_argument(
        "--finetune",
        type=str,
        default="",
        help="recipe overrides (space-separated key=value) for the runs from a pretraining file",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--no-write", action="store_true", help="print, leave RESULTS.md alone")
    parser.add_argument(
        "--section", default="unlabelled", help="RESULTS.md section to rewrite (default unlabelled)"
    )
    parser.add_argument("--keep-runs", type=Path, default=None, help="keep the runs here")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="go on with an earlier run in --keep-runs: keep its pretraining files and scored "
        "rows, redo the rest (e.g. a self-training round with another --band)",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        sys.exit(f"--rounds must be at least 1, got {args.rounds}")
    if args.reuse and args.keep_runs is None:
        sys.exit("--reuse needs --keep-runs (the folder of the earlier run)")
    sizes = [int(n) for n in args.labelled.split(",")]
    epochs = [int(e) for e in args.epochs.split(",")]
    if len(epochs) == 1:
        epochs *= len(sizes)
    if len(epochs) != len(sizes):
        sys.exit(f"--epochs has {len(epochs)} values for {len(sizes)} --labelled counts")
    args.epochs_of = dict(zip(sizes, epochs, strict=True))
    seeds = [int(e) for e in args.seeds.split(",")]
    if len(seeds) == 1:
        seeds *= len(sizes)
    if len(seeds) != len(sizes) or min(seeds) < 1:
        sys.exit(f"--seeds {args.seeds}: one count of at least 1, or one per --labelled count")
    args.seeds_of = dict(zip(sizes, seeds, strict=True))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    band = tuple(float(v) for v in args.band.split(","))
    sources = [m.strip() for m in args.self_from.split(",") if m.strip()]
    finetune = shlex.split(args.finetune)
    tuned_as = f" ({', '.join(finetune)})" if finetune else ""
    suffix = "".join(
        "_" + o.partition("=")[0].split(".")[-1] + o.partition("=")[2] for o in finetune
    )
    unknown = [m for m in sources if m != "random" and m not in methods]
    if unknown:
        sys.exit(f"--self-from {unknown[0]}: not random and not in --methods")
    if args.share is None:
        rule = f"band {args.band}, at most {args.max_uncertain:.0%} uncertain pixels"
    else:
        rule = f"the most confident {args.share:.0%} of salt and of empty tiles (band {args.band})"

    import torch

    from saltseg.config import load_config
    from saltseg.data.tgs import load_dataset
    from saltseg.errors import SaltsegError
    from saltseg.pretrain import ImageSet, pretrain_images, save_pretrain
    from saltseg.selftrain import self_train

    try:  # a bad --finetune override stops here, not after the pretraining
        load_config(RECIPE, finetune)
    except SaltsegError as err:
        sys.exit(f"--finetune: {err}")

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

    settings = {
        k: getattr(args, k)
        for k in ("labelled", "epochs", "pretrain_epochs", "pretrain_batch", "unlabelled", "k")
    }
    with tempfile.TemporaryDirectory(prefix="unlabelled_") as tmp:
        work = args.keep_runs or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        state_file = work / "bench-state.json"
        state: dict[str, Any] = {"settings": settings, "pretrained": [], "rows": []}
        if args.reuse:
            state = json.loads(state_file.read_text())
            if state["settings"] != settings:
                sys.exit(f"--reuse: {state_file} was made with other settings: {state['settings']}")
        elif any(work.iterdir()):
            sys.exit(f"{work} is not empty: pass --reuse to go on with an earlier run there")
        commands = state.setdefault("commands", [])
        commands.append(shlex.join(["python", "bench/unlabelled.py", *sys.argv[1:]]))

        def save_state() -> None:
            state_file.write_text(json.dumps(state, indent=1))

        def folder_of(ids: list[str], name: str, linker) -> Path:
            out = work / name
            return out if out.is_dir() else linker(args.data, ids, out)

        unlabelled = folder_of(test.ids, "unlabelled", link_unlabelled)
        images = ImageSet(
            test.images, test.depths, [{"folder": str(unlabelled), "images": len(test)}]
        )
        base = load_config(RECIPE, ["model.pretrained=false", f"trainer.accelerator={accelerator}"])
        pretrained: list[dict[str, Any]] = state["pretrained"]
        files: dict[str, Path] = {}
        for method in methods:
            files[method] = work / f"{method}.pt"
            if any(p["method"] == method for p in pretrained) and files[method].is_file():
                continue  # --reuse: pretrained by an earlier invocation
            payload = pretrain_images(
                base,
                images,
                method,
                args.pretrain_epochs,
                batch_size=args.pretrain_batch,
                device=args.device,
                progress=False,
            )
            save_pretrain(payload, files[method])
            pretrained.append({k: v for k, v in payload.items() if k not in ("encoder", "decoder")})
            save_state()
            print(f"pretrained {method}: {payload['seconds']:.0f}s", flush=True)

        rows: list[dict[str, Any]] = state["rows"]

        def measured(n: int, init: str) -> dict[str, dict[str, Any]]:
            """The seeds measured for a row (a row of an earlier version: the recipe's seed)."""
            for r in rows:
                if (r["labelled"], r["init"]) == (n, init):
                    return r.get("seeds") or {
                        str(SEED): {k: r[k] for k in ("score", "seconds", "notes")}
                    }
            return {}

        def report(n: int, init: str, seeds: dict[str, dict[str, Any]]) -> None:
            rows[:] = [r for r in rows if (r["labelled"], r["init"]) != (n, init)]
            scores = [v["score"] for v in seeds.values()]
            seconds = [v["seconds"] for v in seeds.values()]
            notes = next(iter(seeds.values()))["notes"]
            if len(seeds) > 1:
                each = " / ".join("n/a" if v is None else f"{v:.4f}" for v in scores)
                notes = f"mean of seeds {', '.join(seeds)}: {each}" + (
                    f"; {notes}" if notes else ""
                )
            row = {
                "labelled": n,
                "init": init,
                "score": None if None in scores else float(np.mean(scores)),
                "seconds": None if None in seconds else float(np.mean(seconds)),
                "notes": notes,
                "seeds": seeds,
            }
            rows.append(row)
            rows.sort(key=lambda r: (r["labelled"], ORDER.index(r["init"].split(" ")[0])))
            save_state()
            print({k: v for k, v in row.items() if k != "seeds"}, flush=True)
            if not args.no_write:  # keep what is measured should a later contender fail
                partial = "Partial: the run goes on.\n\n"
                write_section(
                    args.section,
                    partial + render(rows, pretrained, args, len(test), commands, len(labelled)),
                )

        def seeded(folder: Path, seed: int) -> Path:
            return folder if seed == SEED else folder.with_name(f"{folder.name}_seed{seed}")

        def measure(n: int, init: str, folder: Path, make) -> bool:
            """Run ``make(seed, out) -> (run, seconds, notes)`` for every seed of ``n`` not yet
            measured, score each run and record the row; False if a seed failed."""
            seeds = measured(n, init)
            for seed in range(SEED, SEED + args.seeds_of[n]):
                if seeds.get(str(seed), {}).get("score") is not None:
                    continue
                run, seconds, notes = make(seed, seeded(folder, seed))
                score = None if run is None else held_out_score(run, held_out)
                seeds[str(seed)] = {"score": score, "seconds": seconds, "notes": notes}
                report(n, init, seeds)
                if run is None:
                    return False
            return True

        def bench_size(n: int) -> None:
            data = folder_of(pool[:n], f"labelled_{n}", link_labelled)
            fixed = [f"trainer.epochs={args.epochs_of[n]}", f"data.k={args.k}"]

            def recipe(seed: int, *extra: str) -> Any:
                return load_config(
                    RECIPE,
                    [f"trainer.accelerator={accelerator}", *fixed, f"trainer.seed={seed}", *extra],
                )

            def start_from(path: str, *extra: str):
                def make(seed: int, out: Path) -> tuple[Path, float, str]:
                    run, seconds = train(
                        recipe(seed, f"model.pretrained={path}", *extra), data, out
                    )
                    return run, seconds, ""

                return make

            random_run = work / f"random_{n}"
            measure(n, "random", random_run, start_from("false"))
            for method, path in files.items():
                init = f"{method} pretraining{tuned_as}"
                measure(n, init, work / f"{method}_{n}{suffix}", start_from(str(path), *finetune))
            for source in sources:
                label = "random" if source == "random" else f"{source} pretraining{tuned_as}"
                tag = "" if args.share is None else f", share {args.share:g}"
                if source == "random" and args.share is None:
                    first = work / f"self_{n}"  # the folder of the first version of this bench
                else:
                    first = work / f"self_{source}_{args.share or 'max'}_{n}"
                    first = first.with_name(first.name + ("" if source == "random" else suffix))
                origin = random_run if source == "random" else work / f"{source}_{n}{suffix}"
                outs = [first] + [
                    first.with_name(f"{first.name}_round{r}") for r in range(2, args.rounds + 1)
                ]

                for r in range(1, args.rounds + 1):

                    def one_round(seed: int, folder: Path, r=r, origin=origin, outs=outs):
                        started = time.perf_counter()
                        # round 1 from the seed's origin run, a later round from the round before
                        before = seeded(origin, seed)
                        if r > 1:
                            before = seeded(outs[r - 2], seed) / "round_1" / "run"
                        pool_size = min(len(test), max(1, round(args.self_ratio * n)))
                        pool_dir = folder_of(
                            test.ids[:pool_size], f"pool_{pool_size}", link_unlabelled
                        )
                        try:
                            summary = self_train(
                                before,
                                pool_dir,
                                1,
                                folder,
                                data=data,
                                band=band,
                                max_uncertain=args.max_uncertain,
                                share=args.share,
                                progress=False,
                                # a later round's source has the scaled epochs: start from N's
                                overrides=[] if r == 1 else [f"trainer.epochs={args.epochs_of[n]}"],
                                same_steps=True,
                                overwrite=args.reuse,  # the bench's own earlier attempt
                            )
                        except SaltsegError as err:
                            return None, None, f"{rule}: {err}"
                        fin = summary["finished"][0]
                        notes = (
                            f"{rule}: {fin['pseudo_tiles']} of {fin['unlabelled_tiles']} "
                            f"unlabelled tiles pseudo-labelled ({fin['pseudo_with_salt']} with "
                            f"salt); {fin['epochs']} epoch(s); s include their prediction"
                        )
                        return Path(fin["run"]), time.perf_counter() - started, notes

                    name = f"self-training round {r} (from {label}{tag})"
                    if not measure(n, name, outs[r - 1], one_round):
                        break

        for n in sizes:
            bench_size(n)
    body = render(rows, pretrained, args, len(test), commands, len(labelled))
    print(body)
    if not args.no_write:
        write_section(args.section, body)


if __name__ == "__main__":
    main()
