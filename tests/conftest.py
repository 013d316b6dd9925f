"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from saltseg.data.tiles_io import write_image_png
from saltseg.training.kfold import train_kfold
from tests.helpers import make_layout, tiny_config

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "tgs-sample"


@pytest.fixture(scope="session")
def tgs_sample() -> Path:
    """The real competition sample beside the checkout; the test skips when absent."""
    if not (SAMPLE / "train" / "images").is_dir():
        pytest.skip(f"real sample not found at {SAMPLE}")
    return SAMPLE


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    """Keep the tile cache of tests out of the user's home."""
    monkeypatch.setenv("SALTSEG_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """16 labelled and 10 test tiles in the Kaggle layout, one test tile constant. Read-only:
    a test that changes files copies the folder first."""
    root = tmp_path_factory.mktemp("tiny-data")
    make_layout(root, n=16, n_test=9)
    write_image_png(root / "test" / "images" / "0000000000.png", np.full((101, 101), 0.4))
    with open(root / "depths.csv", "a") as depths:
        depths.write("0000000000,500\n")
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A two-fold run of a tiny U-Net (timm test_resnet) with scSE, hypercolumn and classifier.
    Read-only: a test that changes files copies the run first."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny-runs") / "a"
    train_kfold(tiny_config(), out, data=tiny_data, progress=False)
    return out
