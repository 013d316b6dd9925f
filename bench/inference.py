"""Inference throughput on CPU: saltseg torch eager vs onnxruntime vs smp's Unet, flip TTA.

The model is the resnet34 recipe (configs/resnet34.yaml, random init): U-Net with scSE on both
paths, hypercolumn and classifier, tiles reflect-padded 101 -> 128. Every contender predicts the
same prepared tiles with the same batch size and the same flip TTA (plain + mirrored, mean of
sigmoid probabilities, cropped back to 101x101). smp's ``Unet("resnet34")`` runs the same loop
in torch eager. Reading and preparing tiles (PNG -> padded tensor) is timed separately and added
to the 18000-tile estimates.

Run from the repository root: ``python bench/inference.py [--tiles 48] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _results import machine, median_seconds, write_section  # noqa: E402

from saltseg.config import load_config  # noqa: E402
from saltseg.data.tiles_io import write_image_png  # noqa: E402
from saltseg.inference.onnx import export_onnx, onnx_session, session_runner  # noqa: E402
from saltseg.inference.source import open_tiles  # noqa: E402
from saltseg.models import create_model  # noqa: E402
from saltseg.tta import DEFAULT_TTA, predict_with, prepare_inputs, torch_runner  # noqa: E402

TEST_TILES = 18000
TTA = DEFAULT_TTA


def rates(contenders: dict[str, Callable[[], object]], n: int, repeats: int) -> dict[str, float]:
    """Median tiles per second of each contender (each call handles ``n`` tiles).

    After one warm-up call each, the contenders take turns in every round, so that a change of
    load on a shared machine affects them alike.
    """
    for fn in contenders.values():
        fn()
    return {name: n / seconds for name, seconds in median_seconds(contenders, repeats).items()}


def smp_runner(model: torch.nn.Module) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    @torch.inference_mode()
    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mask": torch.sigmoid(model(x))}

    return run


def ort_options(path: Path, level: str, threads: int) -> object:
    import onnxruntime as ort

    session = onnx_session(path, threads)
    if level == "all":
        return session
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    }[level]
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=48, help="tiles per timed pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (median)")
    parser.add_argument("--batch-sizes", default="4,8,32", help="batch sizes to compare")
    args = parser.parse_args()
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    cfg = load_config(Path("configs/resnet34.yaml"), ["model.pretrained=false"])
    model = create_model({**cfg.model_kwargs(), "pretrained": False}).eval()
    reference = smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=1).eval()
    n, sizes = args.tiles, [int(b) for b in args.batch_sizes.split(",")]
    images = np.random.default_rng(0).random((n, 101, 101), dtype=np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        for i, image in enumerate(images):
            write_image_png(Path(tmp) / f"{i:05d}.png", image)
        source = open_tiles(tmp)
        read = lambda: prepare_inputs(source.read(0, n), source.depths, cfg)  # noqa: E731
        prep = rates({"read": read}, n, args.repeats)["read"]
        inputs = prepare_inputs(images, None, cfg)
        onnx_path = export_onnx(model, cfg, Path(tmp) / "resnet34.onnx")
        runners = {"saltseg U-Net, torch eager": torch_runner(model)}
        for level, t in [("all", threads), ("basic", threads), ("none", threads), ("all", 1)]:
            name = f"saltseg U-Net, onnxruntime (opt {level}, {t} thread{'s' * (t > 1)})"
            runners[name] = session_runner(ort_options(onnx_path, level, t))
        runners["smp Unet(resnet34), torch eager"] = smp_runner(reference)
        names = list(runners)
        contenders = {
            (name, bs): functools.partial(
                predict_with, runners[name], cfg, images, None, TTA, bs, inputs
            )
            for bs in sizes
            for name in names
        }
        load_before = os.getloadavg()[0]
        measured = rates(contenders, n, args.repeats)
        load_after = os.getloadavg()[0]
        want = contenders[(names[0], sizes[0])]()["mask"]
        diff = float(np.abs(want - contenders[(names[1], sizes[0])]()["mask"]).max())

    lines = [
        "## Inference throughput (`bench/inference.py`)",
        "",
        "resnet34 recipe (scSE both paths, hypercolumn, classifier; random init), 101 -> 128 "
        f"reflect pad, flip TTA (2 forward passes per tile), {n} tiles per pass, median of "
        f"{args.repeats} passes taken in turns. The CPU was shared with other jobs (load average "
        f"{load_before:.1f} before, {load_after:.1f} after, this benchmark included).",
        f"Machine: {machine()}.",
        "",
        "| contender | "
        + " | ".join(f"tiles/s, batch {bs}" for bs in sizes)
        + " | 18000 tiles, 1 model, best batch (incl. reading) |",
        "| --- |" + " --- |" * (len(sizes) + 1),
    ]
    for name in names:
        values = [measured[(name, bs)] for bs in sizes]
        minutes = (TEST_TILES / max(values) + TEST_TILES / prep) / 60
        cells = " | ".join(f"{v:.1f}" for v in values)
        lines.append(f"| {name} | {cells} | {minutes:.1f} min |")
    ratios = ", ".join(
        f"{measured[(names[1], bs)] / measured[(names[0], bs)]:.2f}x at batch {bs}" for bs in sizes
    )
    best_torch = max(measured[(names[0], bs)] for bs in sizes)
    best_ort = max(measured[(names[1], bs)] for bs in sizes)
    lines += [
        "",
        f"Reading and preparing tiles (PNG -> padded tensor): {prep:.0f} tiles/s. "
        f"onnxruntime (opt all) / torch eager: **{ratios}**; best batch against best batch "
        f"{best_ort / best_torch:.2f}x (target 1.5x). Max abs difference of probabilities, "
        f"onnxruntime vs torch: {diff:.1e}.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section("inference", body)


if __name__ == "__main__":
    main()
