"""The base class of saltseg's models: option and input checks, padding and cropping back."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from saltseg.errors import SaltsegError
from saltseg.models.modules import Padding, crop_padding, pad_to_multiple, standardize

Outputs = dict[str, torch.Tensor | list[torch.Tensor]]


class SegmentationModel(nn.Module):
    """A salt segmentation model: any input size in, ``{"mask": logits, ...}`` out.

    :meth:`forward` checks the input is ``N x in_chans x H x W``, reflect-pads it to a multiple
    of ``stride``, calls :meth:`forward_padded`, and crops every full-resolution output back to
    ``H x W``: 4-D tensors (``"mask"``) and lists of them (``"aux"``); other outputs (the
    ``N x 1`` ``"cls"`` logit) pass through. With ``tile_norm`` set, each input tile is first
    standardized on its own (:func:`~saltseg.models.modules.standardize`).

    Subclasses set ``name`` (the architecture's registry name), and in ``__init__`` the
    attributes ``in_chans``, ``stride``, ``tile_norm`` and ``config`` (``"name"`` plus every
    constructor argument, so ``create_model(model.config)`` rebuilds the same architecture). The
    base adds no parameters, so state dict keys are those of the subclass alone.
    """

    name: ClassVar[str]
    in_chans: int
    stride: int
    tile_norm: bool = False
    config: dict[str, Any]

    def forward(self, x: torch.Tensor) -> Outputs:
        """Segment ``x`` (N x in_chans x H x W); the outputs keep its H x W."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise SaltsegError(
                f"{self.name} expects input N x {self.in_chans} x H x W, got {tuple(x.shape)}"
            )
        if self.tile_norm:
            x = standardize(x)
        x, pad = pad_to_multiple(x, self.stride)
        return {key: _crop(value, pad) for key, value in self.forward_padded(x).items()}

    def forward_padded(self, x: torch.Tensor) -> Outputs:
        """Segment ``x`` whose H and W are multiples of ``stride``; outputs at the same size."""
        raise NotImplementedError


def check_options(model: str, width: float, dropout: float) -> None:
    """Raise :class:`SaltsegError` for a width multiplier <= 0 or a dropout outside [0, 1)."""
    if not width > 0:
        raise SaltsegError(f"{model}: width multiplier must be > 0, got {width}")
    if not 0 <= dropout < 1:
        raise SaltsegError(f"{model}: dropout must be in [0, 1), got {dropout}")


def check_pretrained(model: str, pretrained: Any) -> bool | str:
    """Validate a ``pretrained`` argument the way timm takes it.

    Args:
        model: The model's name, for the error message.
        pretrained: ``False``, ``True`` or the path of a local weights file.

    Returns:
        ``pretrained`` with a path turned into a string (so configs stay serialisable).

    Raises:
        SaltsegError: Anything else.
    """
    if isinstance(pretrained, Path):
        return str(pretrained)
    if isinstance(pretrained, bool | str):
        return pretrained
    raise SaltsegError(
        f"{model}: pretrained must be true, false or a weights file path, got {pretrained!r}"
    )


def _crop(
    value: torch.Tensor | list[torch.Tensor], pad: Padding
) -> torch.Tensor | list[torch.Tensor]:
    if isinstance(value, list):
        return [crop_padding(v, pad) for v in value]
    return crop_padding(value, pad) if value.ndim == 4 else value
