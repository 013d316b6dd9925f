"""Segmentation losses on logits as pure functions.

Shapes: ``logits`` is ``(N, 1, H, W)`` or ``(N, H, W)``; ``target`` has the same shape with values
in {0, 1} (any dtype). Half-precision logits are computed in float32 (pixel counts overflow the
float16 mantissa). Every loss returns a scalar. ``per_image=True``
computes the loss on each image and averages; ``per_image=False`` treats the batch as one image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from saltseg.errors import SaltsegError


def _flat(logits: Tensor, target: Tensor, per_image: bool = True) -> tuple[Tensor, Tensor]:
    """Check shapes and flatten to ``(N, P)`` (per image) or ``(1, N * P)`` (batch)."""
    if logits.dim() not in (3, 4) or (logits.dim() == 4 and logits.shape[1] != 1):
        raise SaltsegError(f"logits must be (N,1,H,W) or (N,H,W), got {tuple(logits.shape)}")
    if target.shape != logits.shape:
        raise SaltsegError(f"target {tuple(target.shape)} != logits {tuple(logits.shape)}")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    rows = logits.shape[0] if per_image else 1
    return logits.reshape(rows, -1), target.to(logits.dtype).reshape(rows, -1)


def check_dice_smooth(smooth: float) -> None:
    """Raise :class:`SaltsegError` unless the Dice smoothing is > 0."""
    if smooth <= 0:
        raise SaltsegError(f"dice smooth must be > 0, got {smooth}")


def check_bootstrap_k(k: float) -> None:
    """Raise :class:`SaltsegError` unless the bootstrapped fraction is in (0, 1]."""
    if not 0 < k <= 1:
        raise SaltsegError(f"bootstrapped_ce k must be in (0, 1], got {k}")


def bce_loss(logits: Tensor, target: Tensor, pos_weight: float | None = None) -> Tensor:
    """Mean binary cross-entropy over all pixels of the batch.

    Args:
        logits: ``(N, 1, H, W)`` or ``(N, H, W)`` mask logits.
        target: Same shape, values in {0, 1}.
        pos_weight: Weight of the salt (positive) pixels; ``None`` for 1.

    Returns:
        Scalar loss.
    """
    x, y = _flat(logits, target)
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=x.dtype, device=x.device)
    return F.binary_cross_entropy_with_logits(x, y, pos_weight=pw)


def soft_dice_loss(
    logits: Tensor, target: Tensor, per_image: bool = True, smooth: float = 1.0
) -> Tensor:
    """``1 - (2|P*T| + s) / (|P| + |T| + s)`` on sigmoid probabilities.

    With an empty truth the loss is ``|P| / (|P| + s)``: about 0 for an empty prediction, and its
    gradient pushes every pixel toward background (never NaN, since ``s > 0``).

    Args:
        logits: ``(N, 1, H, W)`` or ``(N, H, W)`` mask logits.
        target: Same shape, values in {0, 1}.
        per_image: Dice of each image, averaged; ``False`` for one Dice over the batch.
        smooth: Additive smoothing ``s > 0`` of numerator and denominator.

    Returns:
        Scalar loss.
    """
    check_dice_smooth(smooth)
    x, y = _flat(logits, target, per_image)
    p = torch.sigmoid(x)
    inter = (p * y).sum(1)
    dice = (2 * inter + smooth) / (p.sum(1) + y.sum(1) + smooth)
    return (1 - dice).mean()


def _lovasz_grad(gt_sorted: Tensor) -> Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss, rows sorted by decreasing error."""
    gts = gt_sorted.sum(1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(1)
    union = gts + (1 - gt_sorted).cumsum(1)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)


def _lovasz_rows(x: Tensor, y: Tensor) -> Tensor:
    """Lovasz hinge of each row of logits ``x`` against labels ``y``; returns ``(rows,)``."""
    errors = 1 - x * (2 * y - 1)
    errors_sorted, perm = torch.sort(errors, dim=1, descending=True)
    grad = _lovasz_grad(torch.gather(y, 1, perm))
    return (F.relu(errors_sorted) * grad).sum(1)


def lovasz_hinge(
    logits: Tensor, target: Tensor, per_image: bool = True, symmetric: bool = False
) -> Tensor:
    """Lovasz hinge (Berman et al. 2018), a convex surrogate of ``1 - IoU``.

    Hinge errors ``1 - x * (2y - 1)`` are sorted and weighted by the gradient of the Lovasz
    extension of the Jaccard loss. With an empty truth the union is never 0 (no NaN) and the loss
    is ``relu(1 + max(x))``: only the most confident false-positive pixel gets gradient, pushing it
    toward background. ``symmetric=True`` returns ``(L(x, y) + L(-x, 1 - y)) / 2``, which also
    scores the background as an object and so gives every pixel of an empty tile a gradient.

    Args:
        logits: ``(N, 1, H, W)`` or ``(N, H, W)`` mask logits.
        target: Same shape, values in {0, 1}.
        per_image: Loss of each image, averaged; ``False`` for one loss over the batch.
        symmetric: Average with the loss of the inverted problem (background as the object).

    Returns:
        Scalar loss.
    """
    x, y = _flat(logits, target, per_image)
    loss = _lovasz_rows(x, y)
    if symmetric:
        loss = (loss + _lovasz_rows(-x, 1 - y)) / 2
    return loss.mean()


def bootstrapped_ce(
    logits: Tensor, target: Tensor, k: float = 0.25, per_image: bool = True
) -> Tensor:
    """Mean BCE over the hardest ``ceil(k * P)`` pixels (Wu et al. 2016).

    Args:
        logits: ``(N, 1, H, W)`` or ``(N, H, W)`` mask logits.
        target: Same shape, values in {0, 1}.
        k: Fraction of pixels kept, ``0 < k <= 1``.
        per_image: Hardest pixels of each image (``P = H * W``); ``False`` for the batch's.

    Returns:
        Scalar loss.
    """
    check_bootstrap_k(k)
    x, y = _flat(logits, target, per_image)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    return ce.topk(math.ceil(k * ce.shape[1]), dim=1).values.mean()


def focal_loss(
    logits: Tensor, target: Tensor, alpha: float | None = 0.25, gamma: float = 2.0
) -> Tensor:
    """Mean focal loss ``-a_t (1 - p_t)^gamma log(p_t)`` over all pixels (Lin et al. 2017).

    Args:
        logits: ``(N, 1, H, W)`` or ``(N, H, W)`` mask logits.
        target: Same shape, values in {0, 1}.
        alpha: Weight of salt pixels (background gets ``1 - alpha``); ``None`` for no ``a_t``.
        gamma: Focusing exponent.

    Returns:
        Scalar loss.
    """
    x, y = _flat(logits, target)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p = torch.sigmoid(x)
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return loss.mean()


def check_empty_topk_k(k: int) -> None:
    """Raise :class:`SaltsegError` unless the number of pixels of ``empty_topk`` is >= 1."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SaltsegError(f"empty_topk k must be a whole number of pixels >= 1, got {k!r}")


def empty_topk_loss(logits: Tensor, target: Tensor, k: int = 32) -> Tensor:
    """Penalty on the most salt-like pixels of tiles whose truth is empty.

    For each empty-truth tile, the BCE toward "no salt" of the mean of its ``k`` largest logits
    (``softplus`` of that mean); summed over those tiles and divided by the batch size, so a batch
    without empty tiles gives 0. The competition scores an empty tile 0 for any predicted pixel,
    but a pixel-averaged BCE hardly sees a blob of a few dozen pixels on one tile of a batch; this
    term puts the whole weight of such a tile on its blob.

    Args:
        logits: ``(N, 1, H, W)`` or ``(N, H, W)`` mask logits.
        target: Same shape, values in {0, 1}.
        k: Pixels averaged per tile (capped at the tile's size).

    Returns:
        Scalar loss.
    """
    check_empty_topk_k(k)
    x, y = _flat(logits, target)
    top = x.topk(min(k, x.shape[1]), dim=1).values.mean(1)
    return (F.softplus(top) * (1 - nonempty(y))).sum() / x.shape[0]


def nonempty(target: Tensor) -> Tensor:
    """``(N,)`` float: 1 where the mask ``(N, 1, H, W)`` or ``(N, H, W)`` has any salt pixel."""
    return (target.reshape(target.shape[0], -1) > 0.5).any(1).float()


def classifier_bce(cls_logits: Tensor, target: Tensor) -> Tensor:
    """BCE of the classifier logit against "mask is non-empty".

    Args:
        cls_logits: ``(N, 1)`` or ``(N,)`` logits of "tile has salt".
        target: ``(N, 1, H, W)`` or ``(N, H, W)`` masks.

    Returns:
        Scalar loss.
    """
    y = nonempty(target).to(cls_logits.dtype)
    if cls_logits.numel() != y.numel():
        raise SaltsegError(f"cls logits {tuple(cls_logits.shape)} do not match {y.numel()} masks")
    return F.binary_cross_entropy_with_logits(cls_logits.reshape(-1), y)
