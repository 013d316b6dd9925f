"""Helpers shared by the test modules: a tiny Kaggle layout, the tiny recipe, file checksums."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from saltseg.config import Config, load_config
from saltseg.data.tgs import load_dataset
from saltseg.data.tiles_io import write_image_png, write_mask_png
from saltseg.metrics import competition_metric
from saltseg.rle import rle_encode
from saltseg.runs import Run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = [
    "trainer.epochs=1",
    "trainer.limit_train_batches=1",
    "data.k=2",
    "data.batch_size=8",
    "model.encoder=test_resnet",
    "model.decoder_width=0.25",
]
"""Overrides of configs/demo.yaml: a tiny U-Net (timm test_resnet) trained one batch a fold."""


def tiny_config(*extra: str) -> Config:
    """The demo recipe with :data:`TINY` and ``extra`` overrides."""
    return load_config(CONFIGS / "demo.yaml", [*TINY, *extra])


def make_layout(root: Path, n: int = 6, n_test: int = 3, seed: int = 0):
    """A tiny Kaggle-layout folder; returns (ids, images, masks)."""
    rng = np.random.default_rng(seed)
    for sub in ("train/images", "train/masks", "test/images"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"{i:010x}" for i in rng.integers(0, 2**40, n)]
    images = rng.integers(0, 256, (n, 101, 101)).astype(np.float32) / 255
    masks = rng.random((n, 101, 101)) > 0.6
    masks[0] = False
    rows = []
    for tile_id, image, mask in zip(ids, images, masks, strict=True):
        write_image_png(root / "train/images" / f"{tile_id}.png", image)
        write_mask_png(root / "train/masks" / f"{tile_id}.png", mask)
        rows.append((tile_id, rle_encode(mask)))
    test_ids = [f"{i:010x}" for i in rng.integers(0, 2**40, n_test)]
    for tile_id in test_ids:
        write_image_png(root / "test/images" / f"{tile_id}.png", rng.random((101, 101)))
    pd.DataFrame(rows, columns=["id", "rle_mask"]).to_csv(root / "train.csv", index=False)
    depths = pd.DataFrame({"id": ids + test_ids, "z": rng.integers(50, 950, n + n_test)})
    depths.to_csv(root / "depths.csv", index=False)
    return ids, images, masks


def oof_score(run: Path, data: Path, threshold: float = 0.5) -> float:
    """The competition score of a run's out-of-fold predictions, recomputed from its files."""
    oof = Run(run).oof()
    tiles = load_dataset(data, "train")
    rows = [tiles.ids.index(i) for i in oof["ids"]]
    return competition_metric(tiles.masks[rows], oof["mask"] > threshold)


def checksums(root: Path) -> dict[str, str]:
    """SHA-1 of every file below ``root`` (hidden files included), by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
