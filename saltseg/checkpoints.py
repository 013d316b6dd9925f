"""Self-describing checkpoints read back safely: ``torch.load(weights_only=True)`` only.

A file that needs full unpickling is refused, so loading a checkpoint never runs foreign code;
the model is rebuilt from the recipe stored in the checkpoint, without its config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from saltseg.config import Config, config_from_dict
from saltseg.errors import SaltsegError
from saltseg.models import create_model


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A saltseg checkpoint, loaded on the CPU with ``weights_only=True`` (no foreign code runs).

    Raises:
        SaltsegError: a missing, truncated or corrupt file, one that needs full unpickling, or
            one that is not a saltseg checkpoint (no recipe or no weights).
    """
    path = Path(path)
    if not path.is_file():
        raise SaltsegError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds on a bad file
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise SaltsegError(
                f"{path}: refused, it holds objects that only full unpickling could load "
                "(saltseg reads checkpoints with weights_only=True)"
            ) from None
        raise SaltsegError(
            f"{path}: not a readable checkpoint, truncated or corrupt ({text})"
        ) from None
    if not isinstance(ckpt, dict) or "config" not in (ckpt.get("hyper_parameters") or {}):
        raise SaltsegError(f"{path}: not a saltseg checkpoint (no config in hyper_parameters)")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise SaltsegError(f"{path}: not a saltseg checkpoint (no state_dict)")
    return ckpt


def load_model(path: str | Path) -> tuple[nn.Module, Config, dict[str, Any]]:
    """Rebuild the model of a checkpoint without its config file.

    Returns:
        The model (eval mode, CPU), its recipe, and the checkpoint's metadata (``epoch``,
        ``global_step``).
    """
    ckpt = read_checkpoint(path)
    try:
        config = config_from_dict(dict(ckpt["hyper_parameters"]["config"]))
    except SaltsegError as err:
        raise SaltsegError(f"{path}: {err}") from None
    model = create_model(config.model_kwargs(pretrained=False))  # weights from the checkpoint
    state = {k[6:]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise SaltsegError(f"{path}: weights do not fit the model ({str(err)[:200]})") from None
    model.eval()
    meta = {"epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step")}
    return model, config, meta
