"""Keep Lightning's routine chatter (device banners, tips, known harmless warnings) off the
console, so a command prints its own progress and results only.

Warnings and errors that matter still come through: only INFO messages of Lightning's loggers
and the specific warnings listed here are silenced.
"""

from __future__ import annotations

import logging
import warnings

_HARMLESS = (
    r"Checkpoint directory .* exists and is not empty",  # a resumed fold writes beside its files
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning on newer torch
    r"The number of training batches .* is smaller than the logging interval",
    r"The '\w+_dataloader' does not have many workers",
    r".*`training_step` returned `None`",
)


def quiet_lightning() -> None:
    """Silence Lightning's INFO logging and its known harmless warnings (idempotent)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in _HARMLESS:
        warnings.filterwarnings("ignore", message=pattern)
