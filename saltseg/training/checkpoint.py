"""Checkpoints written atomically by Lightning (read back with :func:`saltseg.runs.load_model`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from saltseg.checkpoints import read_checkpoint
from saltseg.io import atomic_path

#: What only ``--resume`` of an unfinished fold reads: the optimizer's moments (Adam keeps two
#: per weight) and the LR schedule's position.
TRAINING_STATE = ("optimizer_states", "lr_schedulers")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file, then renames it into place.

    A process killed while saving leaves the previous checkpoint intact, never a truncated one.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def drop_training_state(path: str | Path) -> None:
    """Rewrite a finished fold's full checkpoint without :data:`TRAINING_STATE`, atomically.

    A finished fold is skipped on ``--resume`` and predicts from its weights, so the optimizer
    state is dead weight (about two thirds of an AdamW ``last.ckpt``). The weights, the recipe,
    the epoch and the moving average's state stay.
    """
    ckpt = read_checkpoint(path)
    if [ckpt.pop(key) for key in TRAINING_STATE if key in ckpt]:
        with atomic_path(path) as tmp:
            torch.save(ckpt, tmp)
