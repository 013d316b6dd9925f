"""Building blocks shared by the segmentation models: conv-BN-ReLU, scSE, heads, padding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from saltseg.errors import SaltsegError

SCSE_MODES = ("add", "max")
TILE_NORM_FLOOR = 0.05


def standardize(x: torch.Tensor, floor: float = TILE_NORM_FLOOR) -> torch.Tensor:
    """The first channel of each image in ``x`` (N x C x H x W, the seismic tile) minus its
    mean, over its standard deviation plus ``floor``; other channels (depth, row) unchanged.

    The floor (in the units of the [0, 1] input) keeps near-constant tiles from being blown up
    into noise. Plain tensor arithmetic, so it exports to ONNX as it is.
    """
    tile = x[:, :1]
    mean = tile.mean((2, 3), keepdim=True)
    centred = tile - mean
    count = max(x.shape[-2] * x.shape[-1] - 1, 1)
    std = torch.sqrt(centred.square().sum((2, 3), keepdim=True) / count)
    tile = centred / (std + floor)
    return tile if x.shape[1] == 1 else torch.cat([tile, x[:, 1:]], dim=1)


class ConvBnAct(nn.Sequential):
    """Convolution without bias, batch norm, ReLU; 'same' padding for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ChannelSE(nn.Module):
    """cSE: recalibrates channels with one gate per channel (Hu et al.; Roy et al. 2018).

    Global average pool -> FC(C/r) -> ReLU -> FC(C) -> sigmoid, then ``x * gate``; the gate is
    the same at every position of a channel.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The N x C x 1 x 1 gate of ``x`` (N x C x H x W)."""
        squeezed = x.mean((2, 3), keepdim=True)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed), inplace=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale ``x`` (N x C x H x W) by a per-channel gate."""
        return x * self.gate(x)


class SpatialSE(nn.Module):
    """sSE: recalibrates positions with one gate per pixel (Roy et al. 2018).

    A 1x1 convolution squeezes the channels to one map, a sigmoid turns it into a gate that is the
    same for every channel at a position.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The N x 1 x H x W gate of ``x`` (N x C x H x W)."""
        return torch.sigmoid(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale ``x`` (N x C x H x W) by a per-position gate."""
        return x * self.gate(x)


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze-and-excitation (Roy et al. 2018).

    Args:
        channels: Channels of the input (and output).
        reduction: Bottleneck ratio of the cSE branch.
        mode: How the two recalibrated maps are combined: ``"add"`` (the paper's default) or
            ``"max"`` (element-wise maximum).
    """

    def __init__(self, channels: int, reduction: int = 16, mode: str = "add") -> None:
        super().__init__()
        if mode not in SCSE_MODES:
            raise SaltsegError(f"unknown scse_mode {mode!r}; valid: {', '.join(SCSE_MODES)}")
        self.mode = mode
        self.cse = ChannelSE(channels, reduction)
        self.sse = SpatialSE(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Recalibrate ``x`` (N x C x H x W); the output has the same shape."""
        if self.mode == "max":
            return torch.maximum(self.cse(x), self.sse(x))
        # x * c + x * s computed as x * (c + s): one full-size product instead of two.
        return x * (self.cse.gate(x) + self.sse.gate(x))


class HypercolumnHead(nn.Module):
    """Mask head over a hypercolumn: conv-BN-ReLU (1x1) then a 1x1 conv to one logit.

    The hypercolumn is the concatenation of every stage map bilinearly upsampled to full size
    (``sum(in_channels)`` channels). A 1x1 convolution and bilinear upsampling are both linear and
    act on different axes, so the first convolution is computed as the sum of per-stage 1x1
    projections upsampled to full size: the same result without building the wide full-size
    tensor. Channel dropout on a stage map equals channel dropout on its upsampled copy.

    With ``context_channels`` the head also takes an image-level vector (N x C): projected to
    ``mid_channels`` and added at every pixel, it is the 1x1 convolution of that vector tiled
    over the image and concatenated to the hypercolumn, so every pixel's logit sees what the whole
    tile looks like (an empty tile can lower all of them at once).

    Args:
        in_channels: Channels of each stage map.
        mid_channels: Width of the conv-BN-ReLU.
        dropout: Channel dropout probability on the hypercolumn.
        context_channels: Channels of the image-level vector; 0 for none.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        mid_channels: int,
        dropout: float = 0.0,
        context_channels: int = 0,
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.proj = nn.ModuleList(nn.Conv2d(c, mid_channels, 1, bias=False) for c in in_channels)
        self.context = (
            nn.Linear(context_channels, mid_channels, bias=False) if context_channels else None
        )
        self.bn = nn.BatchNorm2d(mid_channels)
        self.out = nn.Conv2d(mid_channels, 1, 1)

    def forward(
        self,
        stages: Sequence[torch.Tensor],
        size: Sequence[int],
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits N x 1 x size of the stage maps (each N x C_i x H_i x W_i).

        ``context`` (N x ``context_channels``) is required when the head was built with it.
        """
        y = None
        for proj, stage in zip(self.proj, stages, strict=True):
            z = upsample_to(proj(self.dropout(stage)), size, "bilinear")
            y = z if y is None else y + z
        if self.context is not None:
            if context is None:
                raise SaltsegError("this hypercolumn head needs an image-level context vector")
            y = y + self.context(context)[:, :, None, None]
        return self.out(F.relu(self.bn(y), inplace=True))


class GlobalPool(nn.Module):
    """Global pooling to N x C (``"avg"``) or N x 2C (``"avgmax"``: average, then max)."""

    MODES = ("avg", "avgmax")

    def __init__(self, mode: str = "avg") -> None:
        super().__init__()
        if mode not in self.MODES:
            raise SaltsegError(f"classifier_pool must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Pool one map, or several (each N x C_i x H_i x W_i) side by side."""
        maps = [x] if isinstance(x, torch.Tensor) else list(x)
        pooled = [m.mean((2, 3)) for m in maps]
        if self.mode == "avgmax":
            pooled += [m.amax((2, 3)) for m in maps]
        return torch.cat(pooled, 1) if len(pooled) > 1 else pooled[0]


class ClassifierHead(nn.Sequential):
    """Empty/non-empty tile classifier: global pool, dropout, linear to one logit.

    Args:
        in_channels: Channels of the feature map it reads (their sum when it reads several).
        dropout: Dropout before the linear layer.
        pool: ``"avg"`` (global average) or ``"avgmax"`` (average and max side by side, so one
            strong local response can say "salt" as well as a broad one).
    """

    def __init__(self, in_channels: int, dropout: float = 0.0, pool: str = "avg") -> None:
        width = in_channels * (2 if pool == "avgmax" else 1)
        # The Identity holds the place of the Flatten this head once had, so the linear layer
        # stays "classifier.3" and checkpoints saved before GlobalPool keep loading.
        super().__init__(GlobalPool(pool), nn.Identity(), nn.Dropout(dropout), nn.Linear(width, 1))


Padding = tuple[int, int, int, int]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, Padding]:
    """Reflect-pad ``x`` (N x C x H x W) so that H and W are multiples of ``multiple``.

    The padding is split evenly between the two sides (the extra pixel goes right/bottom).

    Returns:
        The padded tensor and the padding as ``(left, right, top, bottom)``.
    """
    height, width = x.shape[-2:]
    pad_h = -height % multiple
    pad_w = -width % multiple
    pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    if pad_h == 0 and pad_w == 0:
        return x, pad
    if pad_h >= height or pad_w >= width:
        # Reflect padding needs the pad to be smaller than the side; replicate does not.
        return F.pad(x, pad, mode="replicate"), pad
    return F.pad(x, pad, mode="reflect"), pad


def crop_padding(x: torch.Tensor, pad: Padding) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on a full-resolution map."""
    left, right, top, bottom = pad
    height, width = x.shape[-2:]
    return x[..., top : height - bottom, left : width - right]


def upsample_to(x: torch.Tensor, size: torch.Size | tuple[int, int], mode: str) -> torch.Tensor:
    """Resize ``x`` to ``size`` exactly; a no-op when it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)
