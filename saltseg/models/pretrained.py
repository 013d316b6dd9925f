"""Files of self-supervised pretraining (``saltseg pretrain``): what they hold and reading them.

A pretraining file is a ``torch.save`` of plain values, read back with
``torch.load(weights_only=True)``::

    format      "saltseg-pretrain"
    version     1
    method      e.g. "mim", "vicregl", "simclr"
    model       {"name": "unet", "encoder": "resnet34", "in_chans": 1}
    data        [{"folder": ..., "images": N}, ...]; a seismic file: {"file": ..., "images": N,
                "shape": ..., "clip": [low, high], "windows_on_grid": M, "directions": [...]}
    images      total number of images seen per epoch
    epochs      training epochs, steps: optimiser steps
    encoder     state dict of the U-Net's encoder
    decoder     state dict of its decoder blocks (methods that train them)

``model.pretrained=FILE`` in a U-Net recipe loads the encoder (and the decoder when its shapes
match); the encoder name and input channels must be those of the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saltseg.errors import SaltsegError

FORMAT = "saltseg-pretrain"
VERSION = 1


def _load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds on a bad file
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SaltsegError(f"cannot read weights file {path} ({text[:120]})") from None


def _load_quietly(path: Path) -> Any:
    """The file's content, or None when it is missing, a safetensors file or unreadable."""
    if not path.is_file() or path.suffix == ".safetensors":
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - anything unreadable is not one of ours
        return None


def is_pretrain_file(path: str | Path) -> bool:
    """Whether ``path`` is a readable saltseg-pretrain file (False for anything else)."""
    data = _load_quietly(Path(path))
    return isinstance(data, dict) and data.get("format") == FORMAT


def read_if_pretrain(path: str | Path) -> dict[str, Any] | None:
    """The checked content of a saltseg-pretrain file, None for any other file.

    Raises:
        SaltsegError: a saltseg-pretrain file that is incomplete.
    """
    path = Path(path)
    data = _load_quietly(path)
    if not (isinstance(data, dict) and data.get("format") == FORMAT):
        return None
    return _check(data, path)


def read_pretrain_file(path: str | Path) -> dict[str, Any]:
    """A saltseg-pretrain file, checked.

    Raises:
        SaltsegError: the file is missing, unreadable, of another format or incomplete.
    """
    path = Path(path)
    if not path.is_file():
        raise SaltsegError(f"pretraining file {path} does not exist")
    data = _load(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SaltsegError(f"{path} is not a {FORMAT} file")
    return _check(data, path)


def _check(data: dict[str, Any], path: Path) -> dict[str, Any]:
    model = data.get("model")
    if not isinstance(model, dict) or not {"encoder", "in_chans"} <= set(model):
        raise SaltsegError(f"{path}: no model description (encoder, in_chans)")
    if not isinstance(data.get("encoder"), dict):
        raise SaltsegError(f"{path}: no encoder weights")
    return data


def pretrain_summary(data: dict[str, Any]) -> dict[str, Any]:
    """The facts of a pretraining file without its weights (for run.json and reports)."""
    return {k: v for k, v in data.items() if k not in ("encoder", "decoder")}


def check_pretrain_model(data: dict[str, Any], encoder: str, in_chans: int, path: Path) -> None:
    """Refuse a file pretrained for another encoder or number of input channels.

    Raises:
        SaltsegError: one line naming both encoders.
    """
    model = data["model"]
    theirs, ours = (model["encoder"], model["in_chans"]), (encoder, in_chans)
    if theirs != ours:
        raise SaltsegError(
            f"{path} was pretrained for encoder {theirs[0]!r} with in_chans {theirs[1]}, but this "
            f"model has encoder {ours[0]!r} with in_chans {ours[1]}: pretrain for this recipe"
        )


def describe_init(pretrained: Any) -> dict[str, Any]:
    """Where a model's initial weights come from, from its ``pretrained`` setting.

    Returns:
        ``{"kind": "random"}``, ``{"kind": "imagenet"}``, ``{"kind": "pretrain", "file": ...,
        method, data, images, epochs, ...}`` for a saltseg-pretrain file, or ``{"kind": "file",
        "file": ...}`` for another weights file.
    """
    if pretrained is True:
        return {"kind": "imagenet"}
    if not pretrained:
        return {"kind": "random"}
    path = Path(str(pretrained))
    data = _load_quietly(path)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return {"kind": "pretrain", "file": str(path), **pretrain_summary(data)}
    return {"kind": "file", "file": str(path)}


def init_text(init: dict[str, Any]) -> str:
    """One line for :func:`describe_init`'s result, e.g. ``mim pretraining, 2 epochs on ...``."""
    kind = init.get("kind")
    if kind == "imagenet":
        return "timm ImageNet weights"
    if kind == "random":
        return "random"
    if kind == "pretrain":
        folders = ", ".join(
            f"{d.get('folder') or d.get('file')} ({d['images']})" for d in init.get("data", [])
        )
        parts = "encoder and decoder" if init.get("decoder_trained") else "encoder"
        return (
            f"{init.get('method')} pretraining ({parts}), {init.get('epochs')} epoch(s) on "
            f"{init.get('images')} images: {folders} (file {init.get('file')})"
        )
    return f"weights file {init.get('file')}"
