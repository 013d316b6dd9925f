"""Augmentations (albumentations 2.x) for 101x101 tiles, the model input geometry and its inverse.

Images are float32 ``(H, W)`` in [0, 1]; masks are bool/uint8 ``(H, W)``. Geometric transforms
move the mask with the image (``mask=`` target, nearest interpolation). The last step brings the
tile to the model's input ``size``: ``geometry="pad"`` reflect-pads it in the centre,
``geometry="resize"`` resizes it (bilinear); :func:`restore_geometry` undoes either on
predictions.
"""

from __future__ import annotations

from typing import Any, Literal

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from saltseg.config import AugmentConfig
from saltseg.data.draw import gray_to_rgb, mask_outline
from saltseg.errors import SaltsegError
from saltseg.rle import TILE

_RED = np.array([255, 0, 0], dtype=np.uint8)


def _geometry(cfg: AugmentConfig) -> list[A.BasicTransform]:
    if cfg.size == TILE:
        return []
    if cfg.geometry == "pad":
        return [A.PadIfNeeded(cfg.size, cfg.size, border_mode=cv2.BORDER_REFLECT_101)]
    return [A.Resize(cfg.size, cfg.size, mask_interpolation=cv2.INTER_NEAREST_EXACT)]


def _crop(cfg: AugmentConfig) -> list[A.BasicTransform]:
    if cfg.crop == "random":
        side = TILE + 2 * cfg.crop_pad
        pad = A.PadIfNeeded(side, side, border_mode=cv2.BORDER_REFLECT_101)
        return [A.Sequential([pad, A.RandomCrop(TILE, TILE)], p=cfg.crop_p)]
    if cfg.crop == "resized":
        return [
            A.RandomResizedCrop(
                (TILE, TILE),
                scale=cfg.crop_scale,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                p=cfg.crop_p,
            )
        ]
    return []


def build_train_transform(cfg: AugmentConfig | None = None, seed: int | None = None) -> A.Compose:
    """Flips, crop, shift/scale/rotate, brightness/contrast, gamma, then the input geometry.

    Steps with probability 0 are left out. ``seed`` makes the draws reproducible; with DataLoader
    workers pass ``worker_init_fn=seed_worker`` so that workers differ.
    """
    cfg = cfg or AugmentConfig()
    steps: list[A.BasicTransform] = []
    if cfg.hflip_p:
        steps.append(A.HorizontalFlip(p=cfg.hflip_p))
    if cfg.vflip_p:
        steps.append(A.VerticalFlip(p=cfg.vflip_p))
    steps += _crop(cfg)
    if cfg.affine_p:
        steps.append(
            A.Affine(
                translate_percent=(-cfg.shift_limit, cfg.shift_limit),
                scale=(1 - cfg.scale_limit, 1 + cfg.scale_limit),
                rotate=(-cfg.rotate_limit, cfg.rotate_limit),
                border_mode=cv2.BORDER_REFLECT_101,
                p=cfg.affine_p,
            )
        )
    if cfg.brightness_contrast_p:
        steps.append(
            A.RandomBrightnessContrast(
                cfg.brightness_limit, cfg.contrast_limit, p=cfg.brightness_contrast_p
            )
        )
    if cfg.gamma_p:
        steps.append(A.RandomGamma(cfg.gamma_limit, p=cfg.gamma_p))
    return A.Compose(steps + _geometry(cfg), seed=seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: give each worker's ``dataset.transform`` its own seed.

    Without it every worker holds a copy of the same random state and draws the same
    augmentations. The seed is torch's per-worker seed, so it follows ``torch.manual_seed``.
    """
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if isinstance(transform, A.BaseCompose):
        transform.set_random_seed(info.seed % 2**32)


def build_eval_transform(cfg: AugmentConfig | None = None) -> A.Compose:
    """Only the input geometry (pad or resize 101 -> ``cfg.size``)."""
    return A.Compose(_geometry(cfg or AugmentConfig()))


def apply(
    transform: A.Compose, image: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run ``transform`` on a float image ``(H, W)`` and its mask.

    Returns:
        The float32 image clipped to [0, 1] and the uint8 {0, 1} mask (None if none was given).
    """
    if image.ndim != 2:
        raise SaltsegError(f"expected a grayscale (H, W) image, got shape {image.shape}")
    if mask is not None and mask.shape != image.shape:
        raise SaltsegError(f"mask shape {mask.shape} != image shape {image.shape}")
    data: dict[str, Any] = {"image": np.ascontiguousarray(image, dtype=np.float32)}
    if mask is not None:
        data["mask"] = np.ascontiguousarray(mask > 0, dtype=np.uint8)
    out = transform(**data)
    image_out = np.clip(out["image"], 0.0, 1.0).astype(np.float32, copy=False)
    return image_out.reshape(image_out.shape[:2]), out.get("mask")


def restore_geometry(
    prob: np.ndarray | torch.Tensor, geometry: Literal["pad", "resize"], size: int
) -> np.ndarray | torch.Tensor:
    """Bring predictions at the model size back to 101x101: crop the pad or resize (bilinear).

    Args:
        prob: ``(N, 1, size, size)`` or ``(N, size, size)`` probabilities or logits.
        geometry: The geometry used by the input transform.
        size: The model input side.

    Returns:
        Same type, dtype and number of axes, with the last two of size 101.
    """
    if geometry not in ("pad", "resize"):
        raise SaltsegError(f"unknown geometry {geometry!r}; expected 'pad' or 'resize'")
    if prob.ndim not in (3, 4) or tuple(prob.shape[-2:]) != (size, size):
        raise SaltsegError(f"expected (N, 1, {size}, {size}) predictions, got {tuple(prob.shape)}")
    if size == TILE:
        return prob
    if geometry == "pad":
        top = (size - TILE) // 2
        return prob[..., top : top + TILE, top : top + TILE]
    tensor = torch.as_tensor(prob)
    x = tensor.reshape(-1, 1, size, size)
    if not x.is_floating_point():
        x = x.float()
    out = F.interpolate(x, size=(TILE, TILE), mode="bilinear", align_corners=False)
    out = out.to(tensor.dtype).reshape(*tensor.shape[:-2], TILE, TILE)
    return out.numpy() if isinstance(prob, np.ndarray) else out


def _cell(image: np.ndarray, mask: np.ndarray | None, scale: int) -> np.ndarray:
    rgb = gray_to_rgb(image)
    if mask is not None:
        rgb[mask_outline(mask)] = _RED
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1)


def preview_grid(
    images: np.ndarray,
    masks: np.ndarray | None,
    cfg: AugmentConfig | None = None,
    n_aug: int = 5,
    seed: int | None = 0,
    gap: int = 2,
) -> np.ndarray:
    """An RGB uint8 grid: one row per tile, the tile at model geometry then ``n_aug`` augmented
    versions, mask outlines in red. Small inputs are magnified by an integer factor.

    Args:
        images: float32 ``(N, 101, 101)`` in [0, 1].
        masks: bool ``(N, 101, 101)``, or None for no outlines.
    """
    cfg = cfg or AugmentConfig()
    if images.ndim != 3 or len(images) == 0:
        raise SaltsegError(f"expected images (N, H, W) with N > 0, got shape {images.shape}")
    train, plain = build_train_transform(cfg, seed=seed), build_eval_transform(cfg)
    scale = max(1, 202 // cfg.size)
    side = cfg.size * scale
    rows, cols = len(images), 1 + n_aug
    grid = np.full((rows * (side + gap) + gap, cols * (side + gap) + gap, 3), 40, dtype=np.uint8)
    for r, image in enumerate(images):
        mask = None if masks is None else masks[r]
        for c in range(cols):
            img, msk = apply(plain if c == 0 else train, image, mask)
            y, x = gap + r * (side + gap), gap + c * (side + gap)
            grid[y : y + side, x : x + side] = _cell(img, msk, scale)
    return grid


def demo_tiles(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` simple layered tiles, every other one with a salt dome, for previews without data."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    images = np.empty((n, TILE, TILE), np.float32)
    masks = np.zeros((n, TILE, TILE), bool)
    for i in range(n):
        dip, period = rng.uniform(-0.3, 0.3), rng.uniform(6, 14)
        layers = 0.5 + 0.35 * np.sin(2 * np.pi * (yy + dip * xx) / period)
        if i % 2 == 0:
            cx, top, width = rng.uniform(25, 75), rng.uniform(20, 60), rng.uniform(15, 35)
            masks[i] = yy > top + ((xx - cx) / width) ** 2 * 20
            layers = np.where(masks[i], 0.5 + 0.05 * rng.standard_normal(layers.shape), layers)
        images[i] = np.clip(layers + 0.03 * rng.standard_normal(layers.shape), 0, 1)
    return images, masks
