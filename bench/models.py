"""Training speed, size and memory of our resnet34 U-Net against smp's, side by side.

One training step is forward + BCE loss + backward + SGD step on a batch of 16 single-channel
128 x 128 tiles, on the CPU. The three models are timed in interleaved rounds (each round runs
every model for a few steps) after warm-up steps, so slow phases of a shared machine hit all of
them alike; the table gives the median and the range over rounds. Besides wall-clock steps per
second it gives steps per CPU-second of this process (``time.process_time``), which other jobs on
a shared machine disturb less: with one torch thread, wall time includes the time the process
waited for a core, CPU time does not.

Peak memory is measured in a fresh subprocess per model: the growth of the process's peak resident
set size (Linux ``VmHWM``; ``ru_maxrss`` elsewhere) from just before the model is built to after a
few training steps. It covers weights, gradients, optimiser state, activations and allocator
caching, as the operating system sees them.

Run from the repository root: ``python bench/models.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
import torch.nn.functional as F

BATCH, SIZE = 16, 128
SMP = "smp Unet resnet34"
OFF = "saltseg unet resnet34, scSE + hypercolumn off"
ON = "saltseg unet resnet34, scSE + hypercolumn on"
MODELS = (SMP, OFF, ON)


def build(label: str) -> torch.nn.Module:
    """Instantiate the model named ``label`` (one of :data:`MODELS`) with random weights."""
    import segmentation_models_pytorch as smp

    from saltseg.models import create_model

    if label == SMP:
        return smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=1)
    on = label == ON
    return create_model(
        "unet", encoder="resnet34", scse_encoder=on, scse_decoder=on, hypercolumn=on
    )


class Trainer:
    """One model, its SGD optimiser and a fixed batch."""

    def __init__(self, model: torch.nn.Module, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.model = model.train()
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        self.x = torch.randn(BATCH, 1, SIZE, SIZE, generator=generator)
        self.y = (torch.rand(BATCH, 1, SIZE, SIZE, generator=generator) > 0.5).float()

    def step(self) -> None:
        out = self.model(self.x)
        logits = out["mask"] if isinstance(out, dict) else out
        loss = F.binary_cross_entropy_with_logits(logits, self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def measure_memory(label: str, steps: int) -> None:
    """Print the peak-RSS growth (MiB) of building ``label`` and training it ``steps`` steps."""
    import segmentation_models_pytorch  # noqa: F401 - imported before the baseline for all

    import saltseg.models  # noqa: F401

    before = peak_rss_kib()
    trainer = Trainer(build(label))
    for _ in range(steps):
        trainer.step()
    print(json.dumps({"peak_rss_mib": (peak_rss_kib() - before) / 1024}))


def peak_rss_kib() -> int:
    """Peak resident set size of this process in KiB.

    ``ru_maxrss`` survives ``exec`` on Linux (a child starts with its parent's peak), so the
    per-process ``VmHWM`` is read when /proc is there.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_in_subprocess(label: str, threads: int, steps: int) -> float:
    """Run :func:`measure_memory` in a fresh interpreter and return its figure."""
    cmd = [sys.executable, __file__, "--memory", label, "--threads", str(threads)]
    cmd += ["--memory-steps", str(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model per round")
    parser.add_argument("--memory-steps", type=int, default=3, help="steps in the memory run")
    parser.add_argument("--memory", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory:
        measure_memory(args.memory, args.memory_steps)
        return

    from _results import machine, write_section

    memory = {m: memory_in_subprocess(m, args.threads, args.memory_steps) for m in MODELS}
    torch.manual_seed(0)
    trainers = {label: Trainer(build(label)) for label in MODELS}
    params = {label: sum(p.numel() for p in t.model.parameters()) for label, t in trainers.items()}
    for trainer in trainers.values():
        for _ in range(args.warmup):
            trainer.step()
    rates: dict[str, list[float]] = {label: [] for label in MODELS}
    cpu_rates: dict[str, list[float]] = {label: [] for label in MODELS}
    for _ in range(args.rounds):
        for label, trainer in trainers.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                trainer.step()
            rates[label].append(args.steps / (time.perf_counter() - start))
            cpu_rates[label].append(args.steps / (time.process_time() - cpu_start))

    rows = [
        "| model | parameters | steps/s (wall), median (min-max) | vs smp "
        "| steps/CPU-s, median (min-max) | vs smp | peak RSS growth |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in MODELS:
        cells = [label, f"{params[label] / 1e6:.2f} M"]
        for series in (rates, cpu_rates):
            values, median = series[label], statistics.median(series[label])
            cells.append(f"{median:.3f} ({min(values):.3f}-{max(values):.3f})")
            cells.append(f"{median / statistics.median(series[SMP]):.2f}x")
        cells.append(f"{memory[label]:.0f} MiB")
        rows.append("| " + " | ".join(cells) + " |")
    body = "\n".join(
        [
            "## models: resnet34 U-Net training speed against segmentation_models_pytorch",
            "",
            f"Machine: {machine()}. One step: forward + BCE + backward + SGD (momentum) on "
            f"{BATCH} x 1 x {SIZE} x {SIZE}, random init; {args.warmup} warm-up steps, then "
            f"{args.rounds} interleaved rounds of {args.steps} steps per model. Peak RSS growth: "
            "rise of the peak resident set size (VmHWM) of a fresh process from before building "
            f"the model to after {args.memory_steps} training steps (weights, grads, momentum, "
            "activations, allocator caches).",
            "",
            *rows,
        ]
    )
    print(body)
    if not args.no_write:
        write_section("models", body)


if __name__ == "__main__":
    main()
