"""Pseudo-labels: confident test predictions written as an extra Kaggle-layout training set.

A tile is confident when few of its pixels are uncertain, i.e. have a probability inside
``band`` (0.2 to 0.8 by default): at most ``max_uncertain`` of them (a fraction of the tile).
That rule favours empty tiles: a weak model's salt masks always have an uncertain rim. With
``share`` the rule is relative instead: among the tiles predicted with salt and among those
predicted empty, the most confident ``share`` of each group is kept, so pseudo-labels keep the
model's own ratio of salt to empty tiles. A salt tile is ranked by the uncertain share of its
mask (uncertain pixels over uncertain plus salt pixels, so a large mask with a sharp rim beats a
small blob), an empty tile by the uncertain fraction of the tile.
Confident tiles are written as ``OUT/train/images`` (the original PNGs), ``OUT/train/masks``
(the post-processed masks), ``OUT/train.csv`` and, when every depth is known, ``OUT/depths.csv``,
ready to be merged with the real training set for a next round, with ``OUT/pseudo-labels.json``.
Tiles are gathered in a hidden staging folder and moved into place only when the prediction has
finished.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from saltseg.data.tiles_io import write_mask_png
from saltseg.errors import SaltsegError
from saltseg.outputs import OutputFolder
from saltseg.rle import rle_encode

MANIFEST = "pseudo-labels.json"


def uncertain_pixels(probs: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Pixels of each tile ``(N, H, W)`` with a probability strictly inside ``band``."""
    low, high = band
    flat = probs.reshape(len(probs), -1)
    return ((flat > low) & (flat < high)).sum(axis=1)


def uncertain_fraction(probs: np.ndarray, band: tuple[float, float] = (0.2, 0.8)) -> np.ndarray:
    """Fraction of pixels of each tile ``(N, H, W)`` with a probability strictly inside ``band``."""
    return uncertain_pixels(probs, band) / np.prod(probs.shape[1:])


def check_rule(band: tuple[float, float], max_uncertain: float, share: float | None = None) -> None:
    """Refuse a band outside ``0 <= low < high <= 1`` or a fraction or share outside [0, 1]."""
    low, high = band
    if not 0 <= low < high <= 1:
        raise SaltsegError(f"pseudo-label band must satisfy 0 <= low < high <= 1, got {band}")
    if not 0 <= max_uncertain <= 1:
        raise SaltsegError(f"max uncertain fraction must be in [0, 1], got {max_uncertain}")
    if share is not None and not 0 < share <= 1:
        raise SaltsegError(f"pseudo-label share must be in (0, 1], got {share}")


def mask_uncertainty(
    probs: np.ndarray, masks: np.ndarray, band: tuple[float, float] = (0.2, 0.8)
) -> np.ndarray:
    """Per tile: uncertain share of the mask (salt tiles) or of the tile (empty masks)."""
    uncertain = uncertain_pixels(probs, band)
    area = masks.reshape(len(masks), -1).astype(bool).sum(axis=1)
    of_mask = uncertain / np.maximum(uncertain + area, 1)
    return np.where(area > 0, of_mask, uncertain / np.prod(probs.shape[1:]))


def top_share(scores: np.ndarray, has_salt: np.ndarray, share: float) -> np.ndarray:
    """Indices of the ``share`` lowest scores among salt tiles and among empty ones, in order."""
    keep = []
    for group in (np.flatnonzero(has_salt), np.flatnonzero(~has_salt)):
        n = int(np.ceil(share * len(group)))
        keep.append(group[np.argsort(scores[group], kind="stable")[:n]])
    return np.sort(np.concatenate(keep))


def confident(
    probs: np.ndarray, band: tuple[float, float] = (0.2, 0.8), max_uncertain: float = 0.02
) -> np.ndarray:
    """True for tiles with at most ``max_uncertain`` of their pixels inside ``band``."""
    return uncertain_fraction(probs, band) <= max_uncertain


class PseudoLabelWriter:
    """Collects confident tiles chunk by chunk; :meth:`close` writes the CSV files.

    Nothing is written until :meth:`start`; the folder is checked when the writer is made.

    Args:
        out: The new data folder; it must be missing or empty (or hold earlier pseudo-labels
            and ``overwrite`` be set).
        band: Probabilities counted as uncertain.
        max_uncertain: Largest uncertain fraction of a confident tile.
        overwrite: Replace earlier pseudo-labels in ``out``.
        share: Keep the most confident ``share`` of the salt tiles and of the empty tiles
            instead (``max_uncertain`` is then not used); every tile is staged and the others
            are dropped from the staging folder when the writer closes.
    """

    def __init__(
        self,
        out: str | Path,
        band: tuple[float, float] = (0.2, 0.8),
        max_uncertain: float = 0.02,
        overwrite: bool = False,
        share: float | None = None,
    ) -> None:
        check_rule(band, max_uncertain, share)
        self.out = Path(out)
        self.folder = OutputFolder(self.out, MANIFEST, overwrite)
        self.band, self.max_uncertain, self.share = band, max_uncertain, share
        self.rows: list[tuple[str, str, float]] = []
        self.scores: list[float] = []
        self.seen = 0

    def start(self) -> None:
        """Create the staging folder the tiles are gathered in."""
        self.tmp = self.folder.stage()
        self.images, self.masks = self.tmp / "train" / "images", self.tmp / "train" / "masks"
        self.images.mkdir(parents=True)
        self.masks.mkdir(parents=True)

    def write(
        self,
        ids: list[str],
        paths: list[Path],
        probs: np.ndarray,
        masks: np.ndarray,
        depths: np.ndarray,
    ) -> int:
        """Keep the confident tiles among these (stage all with ``share``); returns how many."""
        if self.share is None:
            keep = np.flatnonzero(confident(probs, self.band, self.max_uncertain))
        else:
            keep = np.arange(len(ids))
            self.scores.extend(mask_uncertainty(probs, masks, self.band).tolist())
        for i in keep:
            shutil.copyfile(paths[i], self.images / f"{ids[i]}.png")
            write_mask_png(self.masks / f"{ids[i]}.png", masks[i])
            self.rows.append((ids[i], rle_encode(masks[i]), float(depths[i])))
        self.seen += len(ids)
        return len(keep)

    def close(self) -> dict[str, int]:
        """Write ``train.csv`` (and ``depths.csv``), move everything into place; returns counts."""
        if self.share is not None and self.rows:
            has_salt = np.array([rle != "" for _, rle, _ in self.rows])
            keep = set(top_share(np.array(self.scores), has_salt, self.share).tolist())
            for i, (tile, _, _) in enumerate(self.rows):
                if i not in keep:
                    (self.images / f"{tile}.png").unlink()
                    (self.masks / f"{tile}.png").unlink()
            self.rows = [row for i, row in enumerate(self.rows) if i in keep]
        frame = pd.DataFrame(self.rows, columns=["id", "rle_mask", "z"])
        frame[["id", "rle_mask"]].to_csv(self.tmp / "train.csv", index=False)
        if len(frame) and np.isfinite(frame["z"]).all():
            frame[["id", "z"]].to_csv(self.tmp / "depths.csv", index=False)
        salt = int((frame["rle_mask"] != "").sum())
        counts = {"kept": len(frame), "seen": self.seen, "with_salt": salt}
        rule = {"band": list(self.band), "max_uncertain": self.max_uncertain, "share": self.share}
        self.folder.publish({"pseudo_labels": counts, **rule})
        return counts

    def abort(self) -> None:
        """Drop the tiles written so far."""
        self.folder.abort()
