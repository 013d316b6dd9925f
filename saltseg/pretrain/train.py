"""Pretrain a recipe's U-Net on unlabelled tiles and save its weights as a saltseg-pretrain file.

The model is the recipe's (``model`` section, its own initial weights); the objective one of
:mod:`saltseg.pretrain.methods`. Training is a plain loop: AdamW with a cosine schedule over
shuffled batches, every random draw from one seeded generator. The file (see
:mod:`saltseg.models.pretrained`) is written atomically once training has finished; before
anything runs, every input is checked: method, epochs, batch size, output path, recipe, data.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saltseg.config import Config, OptimConfig, load_config
from saltseg.errors import SaltsegError
from saltseg.io import atomic_path, check_output_file
from saltseg.models import create_model
from saltseg.models.pretrained import FORMAT, VERSION, is_pretrain_file
from saltseg.pretrain.data import ImageSet, load_images
from saltseg.pretrain.methods import PretrainMethod, check_method, create_method
from saltseg.pretrain.sections import DEFAULT_WINDOWS
from saltseg.rle import TILE
from saltseg.training.optim import build_optimizer


def check_pretrain_output(out: str | Path, overwrite: bool = False) -> Path:
    """Check, writing nothing, that a pretraining file may be written to ``out``.

    Raises:
        SaltsegError: ``out`` is a folder or lies under a file; it exists and ``overwrite`` is
            off, or it is not a saltseg-pretrain file (a foreign file is never replaced).
    """
    out = check_output_file(out, overwrite)
    if out.exists() and not is_pretrain_file(out):
        raise SaltsegError(
            f"{out} exists and is not a {FORMAT} file: saltseg only replaces its own "
            "pretraining files, choose another name"
        )
    return out


def _device(config: Config, device: str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    gpu = config.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return torch.device("cuda" if gpu else "cpu")


def build_method(
    config: Config, method: str, seed: int = 0, device: str | None = None
) -> PretrainMethod:
    """The recipe's model (with its own initial weights) under a pretraining method.

    Views are 101 pixels for recipes that pad the tile, the model's input size for recipes that
    resize it (``augment.geometry``).
    """
    check_method(method)
    try:
        model = create_model(config.model_kwargs())
    except (TypeError, ValueError) as err:
        if isinstance(err, SaltsegError):
            raise
        raise SaltsegError(f"bad model config: {str(err).splitlines()[0]}") from None
    augment = config.augment
    view_size = TILE if augment.geometry == "pad" else augment.size
    generator = torch.Generator().manual_seed(seed)
    built = create_method(
        method,
        model,
        extra_channels=config.data.extra_channels,
        view_size=view_size,
        generator=generator,
    )
    return built.to(_device(config, device))


def pretrain_images(
    config: Config,
    images: ImageSet,
    method: str,
    epochs: int,
    batch_size: int | None = None,
    lr: float = 1e-3,
    max_steps: int | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Pretrain on images already loaded; returns the content of a saltseg-pretrain file.

    Args:
        config: The recipe whose model is pretrained.
        images: The images (:func:`~saltseg.pretrain.data.load_images`).
        method: A name of :func:`~saltseg.pretrain.methods.list_methods`.
        epochs: Passes over the images.
        batch_size: Tiles per step (default: the recipe's ``data.batch_size``).
        lr: Peak learning rate of AdamW.
        max_steps: Stop after this many steps (short checks).
        seed: Seed of the model's initial weights, the batches and every augmentation.
        device: ``"cpu"``, ``"cuda"``, ...; default: the GPU when the recipe's accelerator allows
            one and there is one.
        progress: Show a progress bar.
    """
    from tqdm.auto import tqdm

    _check_numbers(epochs, batch_size, lr, max_steps)
    if len(images) < 2:
        raise SaltsegError(f"pretraining needs at least 2 images, found {len(images)}")
    torch.manual_seed(seed)
    built = build_method(config, method, seed, device)
    dev = next(built.parameters()).device
    batch = min(batch_size or config.data.batch_size, len(images))
    batch = max(batch, 2)
    per_epoch = len(images) // batch
    total = epochs * per_epoch if max_steps is None else min(max_steps, epochs * per_epoch)
    optimizer = build_optimizer(
        [{"params": list(built.parameters()), "lr": lr}],
        OptimConfig(optimizer="adamw", weight_decay=1e-4),
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total, 1))
    pixels = torch.from_numpy(images.images)[:, None]
    depths = torch.from_numpy(images.depths)
    losses: list[float] = []
    step, started = 0, time.perf_counter()
    built.train()
    with tqdm(total=total, unit="step", disable=not progress) as bar:
        for _ in range(epochs):
            if step >= total:
                break
            order = torch.randperm(len(images), generator=built.generator)
            epoch_losses = []
            for k in range(per_epoch):
                if step >= total:
                    break
                rows = order[k * batch : (k + 1) * batch]
                loss = built.loss(pixels[rows].to(dev), depths[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                epoch_losses.append(float(loss.detach()))
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{epoch_losses[-1]:.4f}")
            losses.append(float(np.mean(epoch_losses)))
    model = built.model
    return {
        "format": FORMAT,
        "version": VERSION,
        "method": built.name,
        "recipe": config.name,
        "model": {
            "name": config.model.name,
            "encoder": model.encoder.name,
            "in_chans": model.in_chans,
            "decoder_channels": list(model.decoder_channels),
        },
        "data": images.sources,
        "images": len(images),
        "epochs": epochs,
        "steps": step,
        "batch_size": batch,
        "lr": lr,
        "seed": seed,
        "losses": losses,
        "seconds": time.perf_counter() - started,
        "decoder_trained": built.trains_decoder,
        **built.weights(),
    }


def _check_numbers(epochs: int, batch_size: int | None, lr: float, max_steps: int | None) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise SaltsegError(f"epochs must be at least 1, got {epochs}")
    if batch_size is not None and batch_size < 2:
        raise SaltsegError(f"batch size must be at least 2, got {batch_size}")
    if not lr > 0:
        raise SaltsegError(f"learning rate must be > 0, got {lr}")
    if max_steps is not None and max_steps < 1:
        raise SaltsegError(f"max steps must be at least 1, got {max_steps}")


def save_pretrain(payload: dict[str, Any], out: str | Path, overwrite: bool = False) -> Path:
    """Write a saltseg-pretrain file atomically (same rules as :func:`check_pretrain_output`)."""
    out = check_pretrain_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    return out


def pretrain(
    config: Config | str | Path,
    data: str | Path | Sequence[str | Path],
    method: str,
    epochs: int,
    out: str | Path,
    overwrite: bool = False,
    batch_size: int | None = None,
    lr: float = 1e-3,
    max_steps: int | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
    max_windows: int = DEFAULT_WINDOWS,
) -> dict[str, Any]:
    """Pretrain a recipe's U-Net on every tile of ``data`` and save it to ``out``.

    ``model.pretrained=OUT`` in a recipe with the same encoder then starts from these weights.

    Args:
        config: The recipe (a :class:`Config` or a YAML path).
        data: One or more data folders (Kaggle layout or plain folders of PNG tiles) and
            seismic files (SEG-Y, ``.npy``, large images), which give windows of their sections.
        method: ``mim``, ``vicregl`` or ``simclr`` (:func:`~saltseg.pretrain.methods.list_methods`).
        epochs: Passes over the images.
        out: The file to write.
        overwrite: Replace ``out`` if it is an earlier saltseg-pretrain file.
        batch_size, lr, max_steps, seed, device, progress: As :func:`pretrain_images`.
        max_windows: Most windows drawn from one seismic file (seeded by ``seed``).

    Returns:
        The file's facts (no weights) and ``file``, the path written.

    Raises:
        SaltsegError: a bad method, number, output path, recipe or data folder, found before
            anything is written.
    """
    if not isinstance(config, Config):
        config = load_config(config)
    check_method(method)
    _check_numbers(epochs, batch_size, lr, max_steps)
    out = check_pretrain_output(out, overwrite)
    build_method(config, method, seed, "cpu")  # a bad recipe fails before the images are read
    folders = [data] if isinstance(data, str | Path) else list(data)
    images = load_images(
        folders, "depth" in config.data.extra_channels, max_windows=max_windows, seed=seed
    )
    payload = pretrain_images(
        config, images, method, epochs, batch_size, lr, max_steps, seed, device, progress
    )
    path = save_pretrain(payload, out, overwrite)
    summary = {k: v for k, v in payload.items() if k not in ("encoder", "decoder")}
    return {**summary, "file": str(path)}
