"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "tgs-sample"


@pytest.fixture(scope="session")
def tgs_sample() -> Path:
    """The 400 real competition tiles beside the checkout; the test skips when absent."""
    if not (SAMPLE / "train" / "images").is_dir():
        pytest.skip(f"real sample not found at {SAMPLE}")
    return SAMPLE


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    """Keep the tile cache of tests out of the user's home."""
    monkeypatch.setenv("SALTSEG_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
