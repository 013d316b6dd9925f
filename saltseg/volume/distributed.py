"""Volume prediction shared by processes with Lightning (``predict-volume --devices N``).

The pattern is that of :mod:`saltseg.inference.distributed` (``ddp_spawn`` processes, gloo on CPU,
the cores shared between them, the ensemble loaded in each), but the work unit is a slab of lines
instead of a chunk of tiles, and results do not go through shard files: rank ``r`` of ``N`` takes
slabs ``r, r + N, ...`` of a direction and adds its probabilities straight into the shared
memory-mapped accumulator. Slabs are disjoint, and a barrier separates the directions (the only
place two ranks could touch the same samples), so the result equals the single-process one
without a second copy of the cube on disk.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from saltseg.inference.distributed import spawn_trainer
from saltseg.volume.io import Volume
from saltseg.volume.model import RunSpec, default_threads, load_predictor
from saltseg.volume.predict import (
    DIRECTIONS,
    VolumeSettings,
    count_direction_windows,
    predict_direction,
)
from saltseg.volume.store import Accumulator


def _as_is(item: Any) -> Any:
    return item


class VolumePredictor(L.LightningModule):
    """Predicts this rank's slabs of every direction into a shared accumulator file."""

    def __init__(
        self,
        volume: Volume,
        acc: Accumulator,
        spec: RunSpec,
        settings: VolumeSettings,
        directions: tuple[str, ...],
        clip: tuple[float, float],
        progress: bool,
    ) -> None:
        super().__init__()
        self.volume, self.acc, self.spec, self.settings = volume, acc, spec, settings
        self.directions, self.clip, self.progress = directions, clip, progress
        self.predict_fn = None

    def setup(self, stage: str) -> None:
        """Share the cores between ranks and load the models."""
        threads = max(1, default_threads() // self.trainer.world_size)
        torch.set_num_threads(threads)
        self.predict_fn = load_predictor(self.spec, threads=threads)

    def predict_dataloader(self) -> DataLoader:
        """One step per direction on every rank (so that the barriers match)."""
        return DataLoader(list(self.directions), batch_size=None, collate_fn=_as_is)

    def predict_step(self, batch: str, batch_idx: int) -> int:
        """Predict this rank's slabs of direction ``batch``, then wait for the other ranks."""
        from tqdm.auto import tqdm

        assert self.predict_fn is not None
        rank, size = self.global_rank, self.trainer.world_size
        axis = DIRECTIONS[batch]
        total = -(-count_direction_windows(self.volume, axis, self.settings) // size)
        show = self.progress and rank == 0
        with tqdm(total=total, unit="window", desc=f"{batch} (rank 0)", disable=not show) as bar:
            predict_direction(
                self.volume,
                self.acc,
                axis,
                self.predict_fn,
                self.settings,
                self.clip,
                part=(rank, size),
                on_windows=bar.update,
            )
        self.trainer.strategy.barrier()
        return 0


def predict_sharded(
    volume: Volume,
    acc: Accumulator,
    spec: RunSpec,
    settings: VolumeSettings,
    directions: tuple[str, ...],
    clip: tuple[float, float],
    devices: int,
    progress: bool = True,
) -> None:
    """Fill the file-backed ``acc`` with ``devices`` CPU processes (see the module docstring)."""
    assert acc.path is not None, "processes share the accumulator through its file"
    module = VolumePredictor(volume, acc, spec, settings, directions, clip, progress)
    spawn_trainer(devices, acc.path.parent).predict(module, return_predictions=False)
