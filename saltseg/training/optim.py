"""The optimiser of a recipe, with PyTorch's fused kernels where they apply (torch only, no
Lightning, so that the pretraining loop can use it too)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import torch

from saltseg.config import OptimConfig


def build_optimizer(
    groups: list[dict[str, Any]], cfg: OptimConfig, fused: bool = True
) -> torch.optim.Optimizer:
    """The recipe's optimiser over ``groups``, with the fused kernels where the parameters allow.

    A fused step updates every parameter in one kernel: on 2 CPU cores AdamW over a resnet34 U-Net
    takes about 18 ms a step that way against about 100 ms with the default kernels (a training
    step at batch 8 takes about 600 ms). Parameters on a device without fused kernels get the
    default ones; the arithmetic is the same either way.

    Args:
        groups: Parameter groups, each with its ``lr``
            (:func:`saltseg.training.module.param_groups`).
        cfg: The recipe's optimiser settings.
        fused: ``False`` keeps the default kernels everywhere.
    """
    if cfg.optimizer == "sgd":
        make = functools.partial(
            torch.optim.SGD,
            groups,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=True,
        )
    else:
        make = functools.partial(torch.optim.AdamW, groups, weight_decay=cfg.weight_decay)
    if fused and fused_kernels_apply(p for group in groups for p in group["params"]):
        try:
            return make(fused=True)
        except (RuntimeError, ValueError):
            pass
    return make()


def fused_kernels_apply(params: Iterable[torch.Tensor]) -> bool:
    """Whether every parameter is a floating-point tensor on a CPU or CUDA device."""
    params = list(params)
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
