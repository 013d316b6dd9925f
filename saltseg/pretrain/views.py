"""Augmented views of seismic tiles for self-supervised pretraining, made on batches of tensors.

The augmentations suit seismic sections: horizontal flips, random crops resized to the view size
(so also small shifts and zooms), light brightness, contrast and gamma changes, Gaussian noise.
There are no vertical flips (depth has a direction), no rotations and no colour jitter (the
tiles are grayscale). Every draw comes from one ``torch.Generator``, so views are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align

from saltseg.data.channels import DEPTH_SCALE


@dataclass(frozen=True)
class ViewSettings:
    """How views are drawn.

    Attributes:
        size: Side of the views in pixels.
        crop_scale: Range of the crop's area, as a fraction of the tile's.
        crop_ratio: Range of the crop's aspect ratio (width / height).
        hflip_p: Horizontal flip probability.
        brightness: Brightness shift range ``+-brightness``.
        contrast: Contrast factor range ``1 +- contrast`` (around the tile's mean).
        photometric_p: Probability of the brightness/contrast step.
        gamma: Gamma range.
        gamma_p: Probability of the gamma step.
        noise_std: Largest standard deviation of the Gaussian noise.
        noise_p: Probability of the noise step.
    """

    size: int = 101
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.2
    photometric_p: float = 0.8
    gamma: tuple[float, float] = (0.8, 1.25)
    gamma_p: float = 0.5
    noise_std: float = 0.03
    noise_p: float = 0.5


@dataclass
class Views:
    """A batch of views and where they come from.

    Attributes:
        images: ``(N, 1, size, size)`` views in [0, 1].
        boxes: ``(N, 4)`` crop boxes ``x1, y1, x2, y2`` in the tiles' pixel coordinates.
        flipped: ``(N,)`` bool, the view is mirrored left to right.
    """

    images: torch.Tensor
    boxes: torch.Tensor
    flipped: torch.Tensor

    def grid(self, height: int, width: int) -> torch.Tensor:
        """Tile coordinates ``(x, y)`` of the cell centres of a ``height x width`` feature map of
        each view, as ``(N, height, width, 2)`` (lightly's VICRegL grids)."""
        x1, y1, x2, y2 = self.boxes.unbind(1)
        steps_x = (torch.arange(width, device=x1.device) + 0.5) / width
        steps_y = (torch.arange(height, device=y1.device) + 0.5) / height
        xs = x1[:, None] + (x2 - x1)[:, None] * steps_x  # (N, width)
        ys = y1[:, None] + (y2 - y1)[:, None] * steps_y  # (N, height)
        xs = torch.where(self.flipped[:, None], xs.flip(1), xs)
        grid_x = xs[:, None, :].expand(-1, height, -1)
        grid_y = ys[:, :, None].expand(-1, -1, width)
        return torch.stack([grid_x, grid_y], dim=-1)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _chance(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


def random_boxes(
    n: int, height: int, width: int, settings: ViewSettings, generator: torch.Generator
) -> torch.Tensor:
    """``(n, 4)`` random crop boxes ``x1, y1, x2, y2`` inside a ``height x width`` tile, with
    area and aspect ratio in the ranges of ``settings``."""
    area = _uniform(n, *settings.crop_scale, generator) * height * width
    low, high = (math.log(r) for r in settings.crop_ratio)
    ratio = torch.exp(_uniform(n, low, high, generator))
    w = torch.sqrt(area * ratio).clamp(max=width)
    h = torch.sqrt(area / ratio).clamp(max=height)
    x1 = torch.rand(n, generator=generator) * (width - w)
    y1 = torch.rand(n, generator=generator) * (height - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)


def make_views(images: torch.Tensor, settings: ViewSettings, generator: torch.Generator) -> Views:
    """One augmented view of each tile of ``images`` ``(N, 1, H, W)`` in [0, 1]."""
    n, _, height, width = images.shape
    device = images.device
    boxes = random_boxes(n, height, width, settings, generator)
    rois = torch.cat([torch.arange(n, dtype=boxes.dtype)[:, None], boxes], dim=1)
    x = roi_align(images, rois.to(device), settings.size, sampling_ratio=2, aligned=True)
    flipped = _chance(n, settings.hflip_p, generator)
    x = torch.where(flipped.to(device)[:, None, None, None], x.flip(-1), x)

    def per_image(values: torch.Tensor) -> torch.Tensor:
        return values.to(device, x.dtype)[:, None, None, None]

    on = _chance(n, settings.photometric_p, generator)
    contrast = torch.where(on, _uniform(n, -1, 1, generator) * settings.contrast + 1, 1.0)
    shift = torch.where(on, _uniform(n, -1, 1, generator) * settings.brightness, 0.0)
    mean = x.mean((2, 3), keepdim=True)
    x = ((x - mean) * per_image(contrast) + mean + per_image(shift)).clamp(0, 1)
    on = _chance(n, settings.gamma_p, generator)
    low, high = (math.log(g) for g in settings.gamma)
    gamma = torch.where(on, torch.exp(_uniform(n, low, high, generator)), 1.0)
    x = x.clamp_min(1e-6) ** per_image(gamma)
    on = _chance(n, settings.noise_p, generator)
    sigma = torch.where(on, _uniform(n, 0, settings.noise_std, generator), 0.0)
    noise = torch.randn(x.shape, generator=generator).to(device, x.dtype)
    x = (x + per_image(sigma) * noise).clamp(0, 1)
    return Views(x, boxes.to(device), flipped.to(device))


def patch_mask(
    n: int, height: int, width: int, patch: int, ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """``(n, 1, height, width)`` bool masks hiding ``ratio`` of the ``patch x patch`` squares of
    each image (the same number in every image, at random places)."""
    rows, cols = math.ceil(height / patch), math.ceil(width / patch)
    cells = rows * cols
    hidden = max(1, min(cells - 1, round(ratio * cells)))
    order = torch.rand(n, cells, generator=generator).argsort(dim=1)
    mask = torch.zeros(n, cells, dtype=torch.bool)
    mask.scatter_(1, order[:, :hidden], True)
    mask = mask.view(n, 1, rows, cols)
    mask = mask.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)
    return mask[:, :, :height, :width]


def add_channels(
    x: torch.Tensor, depths: torch.Tensor, extra_channels: Sequence[str]
) -> torch.Tensor:
    """The model input: the views ``(N, 1, H, W)`` and the recipe's extra channels, as
    :func:`saltseg.data.channels.make_input` makes them (depth / 1000 ft, 0 when unknown; the
    row position from 0 at the top to 1 at the bottom of the view)."""
    channels = [x]
    n, _, height, width = x.shape
    for name in extra_channels:
        if name == "depth":
            value = torch.nan_to_num(depths.to(x.device, x.dtype), nan=0.0) / DEPTH_SCALE
            channels.append(value[:, None, None, None].expand(n, 1, height, width))
        elif name == "row":
            rows = torch.linspace(0.0, 1.0, height, device=x.device, dtype=x.dtype)
            channels.append(rows[None, None, :, None].expand(n, 1, height, width))
        else:
            raise ValueError(f"unknown extra channel {name!r}")
    return torch.cat(channels, dim=1)
