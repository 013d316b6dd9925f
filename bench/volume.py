"""Sections and cubes: blended sliding windows vs tile by tile, vs MONAI, and memory on a big cube.

1. Quality: synthetic sections with known salt (``saltseg.data.synthetic.make_section``, sizes a
   multiple of 101) are predicted by the same ensemble (no TTA) (i) in section mode (windows with
   50% overlap, Gaussian blending) and (ii) cut into adjacent 101x101 tiles predicted one by
   one. Pixel IoU over all sections, and within 10 px of the tile borders (where tiles lose
   context and seams show).
2. Speed: megapixels per second on one section, saltseg's windows against MONAI's
   ``sliding_window_inference`` (Gaussian mode), same window, overlap and model function; the
   contenders take turns.
3. Memory: ``predict_file`` on a synthetic float32 ``.npy`` cube of ``--cube-gb`` GB (inline and
   crossline directions, .npy outputs) in a fresh process; its peak resident set size (``VmHWM``,
   which counts memory-mapped file pages while they are mapped). The model there is a pointwise
   stand-in (a sigmoid of the amplitude), since the networks would take hours on this cube on a
   CPU; the figure is the machinery's (reading, windows, blending, accumulation, writing).

The model is ``--run RUN`` if given, else one fold of ``configs/demo.yaml`` trained briefly on
synthetic tiles. Run from the repository root: ``python bench/volume.py [--run runs/demo/run]``.
``--only memory --run RUN`` runs the memory measurement alone (the run only gives the threshold)
and rewrites only its paragraph of the section, keeping the other figures as they were.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _results import machine, median_seconds, read_section, write_section  # noqa: E402

from saltseg.volume import RunSpec, VolumeSettings, predict_file, predict_sections  # noqa: E402
from saltseg.volume.model import check_runs, load_predictor  # noqa: E402

BORDER = 10
SECTION = (303, 606)  # quality sections: 3 x 6 tiles
SPEED = (404, 808)


def train_run(root: Path, epochs: int) -> Path:
    """One fold of the demo recipe trained on 600 synthetic tiles."""
    from saltseg.config import load_config
    from saltseg.data.synthetic import generate_dataset
    from saltseg.training.kfold import train_kfold

    generate_dataset(root / "data", n_train=600, n_test=1, seed=1)
    overrides = [f"trainer.epochs={epochs}", "data.k=3"]
    config = load_config(Path("configs/demo.yaml"), overrides)
    train_kfold(config, root / "run", data=root / "data", folds=[0], progress=False)
    return root / "run"


def describe_run(run: Path) -> str:
    """The recipe, epochs and folds of a given run."""
    from saltseg.config import load_config

    config = load_config(run / "config.yaml")
    folds = len({path.parent for path in run.glob("fold_*/*.ckpt")})
    return f"a run of the {config.name} recipe, {config.trainer.epochs} epochs, {folds} fold(s)"


def border_band(height: int, width: int, tile: int = 101, band: int = BORDER) -> np.ndarray:
    """Pixels within ``band`` of an inner tile border."""
    rows, cols = np.arange(height) % tile, np.arange(width) % tile
    near_r = np.minimum(rows, tile - 1 - rows) < band
    near_c = np.minimum(cols, tile - 1 - cols) < band
    near_r[:band], near_r[-band:], near_c[:band], near_c[-band:] = False, False, False, False
    return near_r[:, None] | near_c[None, :]


def iou(truth: np.ndarray, pred: np.ndarray) -> float:
    union = (truth | pred).sum()
    return float((truth & pred).sum() / union) if union else 1.0


def quality(predict, threshold: float, n: int, shape: tuple[int, int]) -> dict[str, float]:
    """IoU overall and near tile borders: section mode vs tile by tile."""
    from saltseg.data.synthetic import make_section

    rng = np.random.default_rng(7)
    truths, section_masks, tile_masks, bands = [], [], [], []
    h, w = shape
    for _ in range(n):
        image, salt = make_section(rng, h, w)
        probs = predict_sections(image[None], predict)[0]
        tiles = (
            image.reshape(h // 101, 101, w // 101, 101).transpose(0, 2, 1, 3).reshape(-1, 101, 101)
        )
        tiled = predict(tiles).reshape(h // 101, w // 101, 101, 101).transpose(0, 2, 1, 3)
        truths.append(salt)
        section_masks.append(probs > threshold)
        tile_masks.append(tiled.reshape(h, w) > threshold)
        bands.append(border_band(h, w))
    t, s, p, b = (np.stack(x) for x in (truths, section_masks, tile_masks, bands))
    return {
        "section": iou(t, s),
        "tiles": iou(t, p),
        "section_border": iou(t[b], s[b]),
        "tiles_border": iou(t[b], p[b]),
        "salt_share": float(t.mean()),
    }


def speed(predict, shape: tuple[int, int], repeats: int) -> dict[str, float]:
    """Megapixels per second of saltseg's windows and MONAI's, taking turns.

    Both call the same model function; the time each spends outside it (cutting windows,
    weighting, accumulating) is measured per pass as well.
    """
    from monai.inferers import sliding_window_inference

    image = np.random.default_rng(3).random(shape, dtype=np.float32)
    tensor = torch.from_numpy(image)[None, None]

    def monai_predictor(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(predict(x[:, 0].numpy()))[:, None]

    counts = {"saltseg": 0, "MONAI": 0}
    in_model = {"saltseg": 0.0, "MONAI": 0.0}
    outside: dict[str, list[float]] = {"saltseg": [], "MONAI": []}

    def counted(fn, name):
        def call(x):
            counts[name] += len(x)
            start = time.perf_counter()
            out = fn(x)
            in_model[name] += time.perf_counter() - start
            return out

        return call

    def timed(name, fn):
        def run() -> np.ndarray:
            in_model[name] = 0.0
            start = time.perf_counter()
            out = fn()
            outside[name].append(time.perf_counter() - start - in_model[name])
            return out

        return run

    def ours() -> np.ndarray:
        return predict_sections(image[None], counted(predict, "saltseg"), chunk=64)[0]

    def theirs() -> np.ndarray:
        out = sliding_window_inference(
            tensor, (101, 101), 64, counted(monai_predictor, "MONAI"), 0.5, "gaussian"
        )
        return out[0, 0].numpy()

    contenders = {"saltseg": timed("saltseg", ours), "MONAI": timed("MONAI", theirs)}
    diff = float(np.abs(ours() - theirs()).max())
    windows = dict(counts)  # one pass each so far
    seconds = median_seconds(contenders, repeats)
    mpix = shape[0] * shape[1] / 1e6
    result = {f"{k}_mps": mpix / v for k, v in seconds.items()}
    result.update({f"{k}_windows": v for k, v in windows.items()}, max_diff=diff)
    result.update({f"{k}_outside_ms": 1e3 * statistics.median(v) for k, v in outside.items()})
    result.update({f"{k}_s": v for k, v in seconds.items()})
    return result


def pointwise(windows: np.ndarray) -> np.ndarray:
    """The stand-in model of the memory run: a sigmoid of the scaled amplitude."""
    return 1 / (1 + np.exp(-8 * (windows - 0.5)))


def make_cube(path: Path, gigabytes: float) -> tuple[int, int, int]:
    """A float32 ``.npy`` cube ``(il, xl, samples)`` of about ``gigabytes`` GB, by inline."""
    from saltseg.data.synthetic import make_section

    n_samples, n_xl = 1024, 512
    n_il = max(2, round(gigabytes * 1e9 / (4 * n_samples * n_xl)))
    rng = np.random.default_rng(0)
    bases = [make_section(rng, n_samples, n_xl)[0].T.copy() for _ in range(4)]
    cube = np.lib.format.open_memmap(path, "w+", np.float32, (n_il, n_xl, n_samples))
    for i in range(n_il):
        a, b = bases[(i // 64) % 4], bases[(i // 64 + 1) % 4]
        f = (i % 64) / 64
        cube[i] = (1 - f) * a + f * b - 0.5
        if i % 64 == 63:
            cube.flush()
    del cube
    return n_il, n_xl, n_samples


def memory_child(cube: str, run: str, out: str) -> None:
    """Predict ``cube`` with the pointwise model and print peak RSS and time as JSON."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    settings = VolumeSettings()
    predict_file(cube, RunSpec([run]), out, settings, "npy", progress=False, model=pointwise)
    seconds = time.perf_counter() - start
    peak = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    print(json.dumps({"peak_rss_mib": peak, "seconds": seconds}))


def memory(run: Path, root: Path, gigabytes: float) -> dict[str, float]:
    cube = root / "cube.npy"
    shape = make_cube(cube, gigabytes)
    cmd = [sys.executable, __file__, "--memory-child", str(cube), "--run", str(run)]
    cmd += ["--out", str(root / "cube-out")]
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(shape=shape, gb=cube.stat().st_size / 1e9)
    return result


def memory_paragraph(m: dict, measured: str = "") -> str:
    """The memory figure of the section."""
    return (
        f"Memory{measured}: `predict_file` on a {m['gb']:.2f} GB float32 cube "
        f"{'x'.join(map(str, m['shape']))} (inline + crossline, .npy outputs, pointwise "
        f"stand-in model): peak RSS **{m['peak_rss_mib']:.0f} MiB** in {m['seconds']:.0f} s "
        f"({np.prod(m['shape']) * 2 / 1e6 / m['seconds']:.1f} megapixels/s of sections without "
        "a network)."
    )


def memory_only(run: str | None, gigabytes: float) -> None:
    """Measure memory alone and replace only the memory paragraph of the section."""
    if not run:
        raise SystemExit("--only memory needs --run (it gives the threshold)")
    with tempfile.TemporaryDirectory(prefix="saltseg-bench-volume-") as tmp:
        m = memory(Path(run), Path(tmp), gigabytes)
    paragraph = memory_paragraph(m, f" (measured alone with `--only memory`; {machine()})")
    print(paragraph)
    body = read_section("volume")
    if body is None:
        body = "## Sections and cubes (`bench/volume.py`)"
    pattern = re.compile(r"\s*Memory[ :(].*?(?=\n\n|\Z)", re.S)
    body = pattern.sub("", body).rstrip()
    write_section("volume", f"{body}\n\n{paragraph}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run folder (default: train one fold briefly)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the brief training")
    parser.add_argument("--sections", type=int, default=6, help="synthetic sections for quality")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes (median)")
    parser.add_argument("--cube-gb", type=float, default=2.0, help="size of the memory cube")
    parser.add_argument("--only", choices=["memory"], help="run one measurement alone")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.run, args.out)
        return
    if args.only == "memory":
        memory_only(args.run, args.cube_gb)
        return
    torch.manual_seed(0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="saltseg-bench-volume-") as tmp:
        root = Path(tmp)
        run = Path(args.run) if args.run else train_run(root, args.epochs)
        spec = RunSpec([str(run)], tta=("none",))
        threshold, _ = check_runs(spec)
        predict = load_predictor(spec)
        q = quality(predict, threshold, args.sections, SECTION)
        s = speed(predict, SPEED, args.repeats)
        m = memory(run, root, args.cube_gb)
    minutes = (time.perf_counter() - started) / 60
    origin = (
        describe_run(run) if args.run else f"one fold of configs/demo.yaml, {args.epochs} epochs"
    )
    lines = [
        "## Sections and cubes (`bench/volume.py`)",
        "",
        f"Model: {origin} on synthetic tiles, no TTA, threshold {threshold:g}. "
        f"Machine: {machine()} (load average {os.getloadavg()[0]:.1f} at the end, "
        f"this benchmark included). Whole run {minutes:.1f} min.",
        "",
        f"Quality on {args.sections} synthetic sections of {SECTION[0]} x {SECTION[1]} "
        "with known salt "
        f"({q['salt_share']:.0%} salt); border band: pixels within {BORDER} px of an inner "
        "tile border.",
        "",
        "| mode | IoU overall | IoU near tile borders |",
        "| --- | --- | --- |",
        f"| section: 50% overlap, Gaussian blending | {q['section']:.4f} | "
        f"{q['section_border']:.4f} |",
        f"| tile by tile (101x101, no overlap) | {q['tiles']:.4f} | {q['tiles_border']:.4f} |",
        "",
        f"Speed on one {SPEED[0]} x {SPEED[1]} section, same model function, window 101, "
        "overlap 0.5, "
        f"Gaussian weights, median of {args.repeats} passes taken in turns:",
        "",
        "| implementation | megapixels/s | windows | s per pass | ms per pass outside the model |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {label} | {s[f'{k}_mps']:.4f} | {s[f'{k}_windows']} | {s[f'{k}_s']:.3f} | "
            f"{s[f'{k}_outside_ms']:.1f} |"
            for k, label in (
                ("saltseg", "saltseg `predict_sections`"),
                ("MONAI", "MONAI `sliding_window_inference`"),
            )
        ),
        "",
        f"saltseg / MONAI speed: {s['saltseg_mps'] / s['MONAI_mps']:.3f}x. The model function "
        "is the same for both, so the whole-pass figures differ only by what each adds around "
        "it (last column) and by run-to-run noise.",
        "",
        f"Max abs difference of the two probability maps: {s['max_diff']:.1e}.",
        "",
        memory_paragraph(m),
    ]
    body = "\n".join(lines)
    print(body)
    write_section("volume", body)


if __name__ == "__main__":
    main()
