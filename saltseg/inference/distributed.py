"""Ensemble prediction sharded over processes with Lightning (``predict --devices N``).

The tiles are cut into chunks; rank ``r`` of ``N`` predicts chunks ``r, r + N, ...`` and writes
each chunk's probabilities (float32) to a shard file. The calling process then reads the shards
back in tile order, so the result is the same as in one process and memory stays bounded. The
processes are started with ``ddp_spawn`` (gloo on CPU), which works from any entry point (the
CLI, a test, a notebook) since nothing re-runs the command line.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from saltseg.inference.ensemble import Ensemble
from saltseg.inference.onnx import default_threads
from saltseg.inference.source import TileSource
from saltseg.io import atomic_path
from saltseg.quiet import quiet_lightning


def _as_is(item: dict[str, Any]) -> dict[str, Any]:
    return item


class _Chunks(Dataset):
    def __init__(self, source: TileSource, starts: list[int], size: int) -> None:
        self.source, self.starts, self.size = source, starts, size

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        start = self.starts[index]
        stop = min(start + self.size, len(self.source))
        return {
            "start": start,
            "images": self.source.read(start, stop),
            "depths": self.source.depths[start:stop],
        }


class EnsemblePredictor(L.LightningModule):
    """Predicts this rank's chunks with an :class:`Ensemble` loaded in :meth:`setup`."""

    def __init__(
        self,
        source: TileSource,
        shard_dir: str | Path,
        ensemble_args: dict[str, Any],
        tta: Sequence[str],
        batch_size: int,
        chunk_size: int,
    ) -> None:
        super().__init__()
        self.source, self.shard_dir = source, Path(shard_dir)
        self.ensemble_args, self.tta = ensemble_args, tuple(tta)
        self.batch_size, self.chunk_size = batch_size, chunk_size
        self.ensemble: Ensemble | None = None

    def setup(self, stage: str) -> None:
        """Share the cores between ranks and load the models."""
        threads = max(1, default_threads() // self.trainer.world_size)
        torch.set_num_threads(threads)
        self.ensemble = Ensemble.load(**self.ensemble_args, threads=threads)

    def predict_dataloader(self) -> DataLoader:
        """This rank's chunks, one per step."""
        starts = list(range(0, len(self.source), self.chunk_size))
        mine = starts[self.global_rank :: self.trainer.world_size]
        chunks = _Chunks(self.source, mine, self.chunk_size)
        return DataLoader(chunks, batch_size=None, collate_fn=_as_is)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> int:
        """Predict one chunk and write its shard; returns the number of tiles."""
        assert self.ensemble is not None
        probs = self.ensemble.predict(batch["images"], batch["depths"], self.tta, self.batch_size)
        path = self.shard_dir / f"{batch['start']:09d}.npz"
        with atomic_path(path) as tmp:
            np.savez(tmp, **probs)
        return len(batch["images"])


def spawn_trainer(devices: int, root: str | Path, progress: bool = False) -> L.Trainer:
    """A Trainer that runs ``predict`` in ``devices`` spawned CPU processes (no logs, no
    checkpoints, no distributed sampler: each rank picks its own share of the work)."""
    quiet_lightning()
    return L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        use_distributed_sampler=False,
        default_root_dir=str(root),
    )


def sharded_probs(
    source: TileSource,
    ensemble_args: dict[str, Any],
    tta: Sequence[str],
    devices: int,
    batch_size: int = 8,
    chunk_size: int = 256,
    progress: bool = True,
) -> Iterator[tuple[int, np.ndarray, dict[str, np.ndarray]]]:
    """``(start, images, probs)`` per chunk in tile order, predicted by ``devices`` processes.

    Args:
        source: The tiles.
        ensemble_args: Keyword arguments of :meth:`Ensemble.load` (without ``threads``).
        tta: TTA views.
        devices: Number of CPU processes.
        batch_size: Tiles per forward pass.
        chunk_size: Tiles per shard.
        progress: Show Lightning's progress bar.
    """
    devices = min(devices, len(source))
    chunk_size = max(1, min(chunk_size, len(source) // devices))  # at least a chunk per rank
    with tempfile.TemporaryDirectory(prefix="saltseg-shards-") as shard_dir:
        module = EnsemblePredictor(source, shard_dir, ensemble_args, tta, batch_size, chunk_size)
        spawn_trainer(devices, shard_dir, progress).predict(module, return_predictions=False)
        for start, images in source.chunks(chunk_size):
            with np.load(Path(shard_dir) / f"{start:09d}.npz") as shard:
                probs = {name: shard[name] for name in shard.files}
            yield start, images, probs
