"""Write one benchmark's section of bench/RESULTS.md, leaving the other sections as they are."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nEach section is rewritten by the script named in it.\n"


def machine() -> str:
    """One line that says where a benchmark ran."""
    return (
        f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"{torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"{datetime.now(UTC):%Y-%m-%d}"
    )


def median_seconds(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each contender over ``repeats`` passes, taken in turns.

    The order of the turn rotates from one pass to the next, so that no contender always runs
    right after another one (caches, clock boost).
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def read_section(name: str) -> str | None:
    """The body of section ``name`` of RESULTS.md, or None when there is none."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    begin, end = _markers(name)
    found = re.search(re.escape(begin) + "(.*?)" + re.escape(end), text, re.S)
    return found.group(1).strip() if found else None


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md with ``body``."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    begin, end = _markers(name)
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text + f"\n{block}\n"
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(RESULTS)


def link_labelled(data: Path, ids: list[str], out: Path) -> Path:
    """A Kaggle-layout folder of the labelled tiles ``ids`` of ``data``, as symlinks."""
    for kind in ("images", "masks"):
        (out / "train" / kind).mkdir(parents=True)
        for tile_id in ids:
            src = (data / "train" / kind / f"{tile_id}.png").resolve()
            (out / "train" / kind / f"{tile_id}.png").symlink_to(src)
    for name in ("train.csv", "depths.csv"):
        if (data / name).exists():
            (out / name).symlink_to((data / name).resolve())
    return out
