"""The images of pretraining: every tile PNG of some folders, and windows of seismic files.

A folder is a Kaggle-layout data folder (its ``train/images`` and ``test/images``, whichever
exist) or any folder of 101x101 PNG tiles; labels are ignored. Depths come from a ``depths.csv``
beside the images (Kaggle layout: in the data folder) and are read only when the recipe has a
depth channel; without that file they are unknown (the depth channel is then 0, as at inference).
A file (SEG-Y line or cube, ``.npy``, image of any size) gives windows cut from its sections
(:mod:`saltseg.pretrain.sections`), whose depths are unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.data.tgs import SPLITS, read_depths
from saltseg.data.tiles_io import read_image
from saltseg.errors import SaltsegError
from saltseg.pretrain.sections import DEFAULT_WINDOWS, SEISMIC_SUFFIXES, section_windows


@dataclass
class ImageSet:
    """Images gathered for pretraining.

    Attributes:
        images: float32 ``(N, 101, 101)`` in [0, 1].
        depths: float32 ``(N,)``, NaN where unknown (or not read).
        sources: Per data folder: ``{"folder": absolute path, "images": count}``.
    """

    images: np.ndarray
    depths: np.ndarray
    sources: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def image_paths(data: str | Path) -> tuple[list[Path], Path]:
    """The tile PNGs of a data folder and the folder its ``depths.csv`` would be in.

    Raises:
        SaltsegError: ``data`` is not a folder.
    """
    root = Path(data)
    if not root.is_dir():
        raise SaltsegError(f"data folder {root} does not exist")
    splits = [root / split / "images" for split in SPLITS if (root / split / "images").is_dir()]
    folders = splits or [root]
    return [p for folder in folders for p in sorted(folder.glob("*.png"))], root


def load_images(
    data: Sequence[str | Path],
    depths: bool = False,
    max_windows: int = DEFAULT_WINDOWS,
    seed: int = 0,
) -> ImageSet:
    """Every tile image of the folders ``data`` and windows of its seismic files (an entry
    named twice is read once).

    Args:
        data: Data folders (Kaggle layout or plain folders of PNG tiles) and seismic files
            (``.sgy``/``.segy``, ``.npy``, ``.png``/``.tif`` sections of any size).
        depths: Read the depths from each folder's ``depths.csv``, when it has one (it must then
            list all its tiles).
        max_windows: Most windows drawn from one seismic file.
        seed: Seed of the windows drawn.

    Raises:
        SaltsegError: no entry, a missing folder or file, no image at all, an unreadable or
            non-101x101 PNG tile, a missing depth, a seismic file that gives no window.
    """
    if not data:
        raise SaltsegError("no data folder given for pretraining")
    seen: set[Path] = set()
    images, depth_parts, sources = [], [], []
    for folder in data:
        resolved = Path(folder).resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        seismic = not resolved.exists() and resolved.suffix.lower() in SEISMIC_SUFFIXES
        if resolved.is_file() or seismic:
            windows, info = section_windows(folder, max_windows, seed)
            images += list(windows)
            depth_parts.append(np.full(len(windows), np.nan, dtype=np.float32))
            sources.append(info)
            continue
        paths, root = image_paths(folder)
        if not paths:
            continue
        images += [read_image(path) for path in paths]
        if depths and (root / "depths.csv").is_file():
            depth_parts.append(read_depths(root / "depths.csv", [p.stem for p in paths]))
        else:
            depth_parts.append(np.full(len(paths), np.nan, dtype=np.float32))
        sources.append({"folder": str(resolved), "images": len(paths)})
    if not images:
        named = ", ".join(str(d) for d in data)
        raise SaltsegError(f"no PNG images found in {named} (nor in their train/ or test/images)")
    return ImageSet(np.stack(images), np.concatenate(depth_parts), sources)
