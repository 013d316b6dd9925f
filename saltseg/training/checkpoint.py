"""Self-describing checkpoints: atomic writes, and a model rebuilt from the file alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from torch import nn

from saltseg.config import Config, config_from_dict
from saltseg.errors import SaltsegError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file, then renames it into place.

    A process killed while saving leaves the previous checkpoint intact, never a truncated one.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file on the CPU (checkpoints are trusted files: full unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise SaltsegError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise SaltsegError(f"{path}: not a readable checkpoint ({err})") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt.get("hyper_parameters", {}):
        raise SaltsegError(f"{path}: not a saltseg checkpoint (no config in hyper_parameters)")
    return ckpt


def load_model(path: str | Path) -> tuple[nn.Module, Config, dict[str, Any]]:
    """Rebuild the model of a checkpoint without its config file.

    Returns:
        The model (eval mode, CPU), its recipe, and the checkpoint's metadata (``epoch``,
        ``global_step``).
    """
    from saltseg.models import create_model

    ckpt = read_checkpoint(path)
    config = config_from_dict(dict(ckpt["hyper_parameters"]["config"]))
    model = create_model(config.model_kwargs(pretrained=False))  # weights from the checkpoint
    state = {k[6:]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise SaltsegError(f"{path}: weights do not fit the model ({str(err)[:200]})") from None
    model.eval()
    meta = {"epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step")}
    return model, config, meta
