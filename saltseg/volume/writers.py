"""The output folder of ``predict-volume``: what it may replace, and writing each output.

Every output is written under a temporary name in the output folder and renamed when all of them
are complete, so an error or a kill never leaves a half-written file under a final name. Only
files that an earlier call wrote (listed in its ``predict-volume.json``) are ever replaced, and
only with ``overwrite``; other files in the folder are left alone.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.errors import SaltsegError

SUMMARY = "predict-volume.json"
OUTPUTS = {
    "npy": ("probabilities.npy", "mask.npy"),
    "segy": ("probabilities.sgy", "mask.sgy"),
    "png": ("section.png", "probabilities.png"),
}
FORMATS = tuple(OUTPUTS)
_TMP = ".predict-volume-"
_DISK_MARGIN = 16 * 2**20


def resolve_formats(formats: str | None, segy: bool, is_2d: bool) -> tuple[str, ...]:
    """Output formats: given (comma-separated) or all that apply (SEG-Y for SEG-Y, PNG for 2D)."""
    if formats is None:
        chosen = ["npy"] + ["segy"] * segy + ["png"] * is_2d
        return tuple(chosen)
    chosen = [f.strip().lower() for f in formats.split(",") if f.strip()]
    for name in chosen:
        if name not in FORMATS:
            raise SaltsegError(f"unknown output format {name!r}; valid: {list(FORMATS)}")
    if "segy" in chosen and not segy:
        raise SaltsegError("SEG-Y output needs a SEG-Y input (its headers are copied)")
    if "png" in chosen and not is_2d:
        raise SaltsegError("PNG output is for 2D sections only")
    if not chosen:
        raise SaltsegError(f"no output format given; valid: {list(FORMATS)}")
    return tuple(dict.fromkeys(chosen))


class OutputFolder:
    """Checks and writes the output folder of one ``predict-volume`` call.

    Args:
        out: The folder.
        names: File names this call writes.
        overwrite: Replace earlier ``predict-volume`` outputs found there.
        source: The input file, which must not be among the outputs.

    Raises:
        SaltsegError: ``out`` is a file, holds earlier outputs (without ``overwrite``), holds a
            file under an output name that no earlier call wrote, or the input is an output.
    """

    def __init__(self, out: Path, names: list[str], overwrite: bool, source: Path | None):
        self.out, self.names = Path(out), [*names, SUMMARY]
        if self.out.exists() and not self.out.is_dir():
            raise SaltsegError(f"output {self.out} exists and is not a folder")
        ours = [n for f in FORMATS for n in OUTPUTS[f]] + [SUMMARY]
        inside = source is not None and source.resolve().parent == self.out.resolve()
        if inside and source.name in ours:
            raise SaltsegError(f"the input {source} would be replaced by an output")
        found = [n for n in ours if (self.out / n).exists()]
        if found and not overwrite:
            raise SaltsegError(
                f"{self.out} holds earlier outputs ({', '.join(found)}); pass --overwrite to "
                "replace them"
            )
        listed = self._listed()
        foreign = [n for n in found if n not in listed]
        if foreign:
            raise SaltsegError(
                f"{self.out / foreign[0]} was not written by predict-volume; choose another "
                "output folder"
            )
        self.stale = [n for n in found if n not in self.names]
        self.created = not self.out.exists()
        self.temps: dict[str, Path] = {}

    def _listed(self) -> list[str]:
        """The files an earlier call recorded in its summary (the summary included)."""
        try:
            files = json.loads((self.out / SUMMARY).read_text())["files"]
            return [str(name) for name in files] if isinstance(files, dict) else []
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def check_disk(self, needed: int) -> None:
        """Refuse when the file system of the folder has less than ``needed`` bytes free."""
        where = self.out
        while not where.exists():
            where = where.parent
        free = shutil.disk_usage(where).free
        if free < needed + _DISK_MARGIN:
            raise SaltsegError(
                f"not enough disk space in {self.out}: needs {needed / 2**30:.2f} GiB, "
                f"{free / 2**30:.2f} GiB free"
            )

    def temp(self, name: str) -> Path:
        """A temporary path in the folder for output ``name`` (or scratch data)."""
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{_TMP}{os.getpid()}-{name}.tmp"
        self.temps[name] = path
        return path

    def commit(self) -> dict[str, str]:
        """Rename every finished output to its final name (the summary last)."""
        done = {}
        for name in sorted(self.names, key=lambda n: n == SUMMARY):
            self.temps.pop(name).replace(self.out / name)
            done[name] = str(self.out / name)
        for name in self.stale:
            (self.out / name).unlink(missing_ok=True)
        return done

    def cleanup(self) -> None:
        """Remove temporary files left (after an error), and the folder if this call made it."""
        for path in self.temps.values():
            path.unlink(missing_ok=True)
        self.temps.clear()
        if self.created and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()


def write_npy(
    prob_path: Path,
    mask_path: Path,
    shape: tuple[int, ...],
    slabs: list[tuple[int, int]],
    read: Callable[[int, int], np.ndarray],
    threshold: float,
) -> None:
    """Write probabilities (float32, NaN in holes) and the mask (uint8) as ``.npy``, by slabs.

    Args:
        prob_path: Probabilities file.
        mask_path: Mask file.
        shape: Output array shape.
        slabs: ``(start, stop)`` ranges along the first axis.
        read: ``(start, stop)`` -> probabilities of those rows of the output.
        threshold: Salt where the probability is above it.
    """
    for path, dtype in ((prob_path, np.float32), (mask_path, np.uint8)):
        del_me = np.lib.format.open_memmap(path, "w+", dtype, shape)
        del del_me
    for start, stop in slabs:
        probs = read(start, stop)
        for path, values in ((prob_path, probs), (mask_path, probs > threshold)):
            mapped = np.lib.format.open_memmap(path, "r+")
            mapped[start:stop] = values
            mapped.flush()
            del mapped


def write_pngs(
    section_path: Path, prob_path: Path, image: np.ndarray, probs: np.ndarray, threshold: float
) -> None:
    """The section with salt overlaid in red, and the probability map (both PNG).

    Args:
        section_path: Overlay PNG.
        prob_path: Probability map PNG.
        image: The scaled section ``(rows, cols)`` in [0, 1].
        probs: Its probabilities.
        threshold: Salt where the probability is above it.
    """
    from matplotlib import colormaps
    from PIL import Image

    gray = np.repeat((image * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    salt = probs > threshold
    overlay = gray.astype(np.float32)
    overlay[salt] = 0.55 * overlay[salt] + 0.45 * np.array([255, 40, 40], np.float32)
    Image.fromarray(overlay.round().astype(np.uint8)).save(section_path, format="PNG")
    colored = colormaps["magma"](np.nan_to_num(probs, nan=0.0))[..., :3]
    Image.fromarray((colored * 255).round().astype(np.uint8)).save(prob_path, format="PNG")


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """The JSON record of a call."""
    path.write_text(json.dumps(summary, indent=2) + "\n")
