"""Segmentation losses on logits: functional cores, thin ``nn.Module`` wrappers, a registry.

Shapes: ``logits`` is ``(N, 1, H, W)`` or ``(N, H, W)``; ``target`` has the same shape with values
in {0, 1} (any dtype). Half-precision logits are computed in float32 (pixel counts overflow the
float16 mantissa). Every loss returns a scalar. ``per_image=True``
computes the loss on each image and averages; ``per_image=False`` treats the batch as one image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def bce_loss(logits: Tensor, target: Tensor, pos_weight: float | None = None) -> Tensor:
    """Mean binary cross-entropy over all pixels of the batch."""
    x, y = _flat(logits, target)
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=x.dtype, device=x.device)
    return F.binary_cross_entropy_with_logits(x, y, pos_weight=pw)


def soft_dice_loss(
    logits: Tensor, target: Tensor, per_image: bool = True, smooth: float = 1.0
) -> Tensor:
    """``1 - (2|P*T| + s) / (|P| + |T| + s)`` on sigmoid probabilities.

    With an empty truth the loss is ``|P| / (|P| + s)``: about 0 for an empty prediction, and its
    gradient pushes every pixel toward background (never NaN, since ``s > 0``).
    """
    if smooth <= 0:
        raise SaltsegError(f"dice smooth must be > 0, got {smooth}")
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
    """
    x, y = _flat(logits, target, per_image)
    loss = _lovasz_rows(x, y)
    if symmetric:
        loss = (loss + _lovasz_rows(-x, 1 - y)) / 2
    return loss.mean()


def bootstrapped_ce(
    logits: Tensor, target: Tensor, k: float = 0.25, per_image: bool = True
) -> Tensor:
    """Mean BCE over the hardest ``ceil(k * P)`` pixels (Wu et al. 2016), ``0 < k <= 1``."""
    if not 0 < k <= 1:
        raise SaltsegError(f"bootstrapped_ce k must be in (0, 1], got {k}")
    x, y = _flat(logits, target, per_image)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    return ce.topk(math.ceil(k * ce.shape[1]), dim=1).values.mean()


def focal_loss(
    logits: Tensor, target: Tensor, alpha: float | None = 0.25, gamma: float = 2.0
) -> Tensor:
    """Mean focal loss ``-a_t (1 - p_t)^gamma log(p_t)`` (Lin et al. 2017); no a_t if alpha=None."""
    x, y = _flat(logits, target)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p = torch.sigmoid(x)
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return loss.mean()


def nonempty(target: Tensor) -> Tensor:
    """``(N,)`` float: 1 where the mask ``(N, 1, H, W)`` or ``(N, H, W)`` has any salt pixel."""
    return (target.reshape(target.shape[0], -1) > 0.5).any(1).float()


def classifier_bce(cls_logits: Tensor, target: Tensor) -> Tensor:
    """BCE of the classifier logit ``(N, 1)`` or ``(N,)`` against "mask is non-empty"."""
    y = nonempty(target).to(cls_logits.dtype)
    if cls_logits.numel() != y.numel():
        raise SaltsegError(f"cls logits {tuple(cls_logits.shape)} do not match {y.numel()} masks")
    return F.binary_cross_entropy_with_logits(cls_logits.reshape(-1), y)


class _LossModule(nn.Module):
    """A loss function with its options bound; ``forward(logits, target)``."""

    fn: Callable[..., Tensor]

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = options

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return type(self).fn(logits, target, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


class BCELoss(_LossModule):
    """Module form of :func:`bce_loss`."""

    fn = staticmethod(bce_loss)

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__(pos_weight=pos_weight)


class DiceLoss(_LossModule):
    """Module form of :func:`soft_dice_loss`."""

    fn = staticmethod(soft_dice_loss)

    def __init__(self, per_image: bool = True, smooth: float = 1.0) -> None:
        super().__init__(per_image=per_image, smooth=smooth)


class LovaszHingeLoss(_LossModule):
    """Module form of :func:`lovasz_hinge`."""

    fn = staticmethod(lovasz_hinge)

    def __init__(self, per_image: bool = True, symmetric: bool = False) -> None:
        super().__init__(per_image=per_image, symmetric=symmetric)


class BootstrappedCELoss(_LossModule):
    """Module form of :func:`bootstrapped_ce`."""

    fn = staticmethod(bootstrapped_ce)

    def __init__(self, k: float = 0.25, per_image: bool = True) -> None:
        super().__init__(k=k, per_image=per_image)


class FocalLoss(_LossModule):
    """Module form of :func:`focal_loss`."""

    fn = staticmethod(focal_loss)

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0) -> None:
        super().__init__(alpha=alpha, gamma=gamma)


def _lovasz_symmetric(per_image: bool = True) -> LovaszHingeLoss:
    return LovaszHingeLoss(per_image=per_image, symmetric=True)


_LOSSES: dict[str, Callable[..., nn.Module]] = {
    "bce": BCELoss,
    "dice": DiceLoss,
    "lovasz": LovaszHingeLoss,
    "lovasz_symmetric": _lovasz_symmetric,
    "bootstrapped_ce": BootstrappedCELoss,
    "focal": FocalLoss,
}

LossSpec = str | Mapping[str, Any] | Sequence[Mapping[str, Any]] | nn.Module


def list_losses() -> list[str]:
    """Names accepted by :func:`create_loss`."""
    return sorted(_LOSSES)


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss by lowercase name, e.g. ``create_loss("dice", per_image=False)``."""
    key = name.lower()
    if key not in _LOSSES:
        raise SaltsegError(f"unknown loss {name!r}; valid: {', '.join(list_losses())}")
    try:
        return _LOSSES[key](**kwargs)
    except TypeError as err:
        raise SaltsegError(f"loss {name!r}: bad options {sorted(kwargs)}: {err}") from None


def loss_from_config(spec: LossSpec) -> nn.Module:
    """A loss from a name, ``{"name": ..., **options}``, ``{name: weight}``, a list of
    ``{"name": ..., "weight": ..., **options}`` (weighted sum) or a module."""
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, str):
        return create_loss(spec)
    if isinstance(spec, Mapping):
        options = dict(spec)
        if "name" not in options:
            return CombinedLoss(options)
        options.pop("weight", None)
        return create_loss(options.pop("name"), **options)
    return CombinedLoss(spec)


class CombinedLoss(nn.Module):
    """Weighted sum of losses.

    Built from ``{"bce": 1.0, "dice": 1.0}`` or from a config list (weight 1 if absent) such as
    ``[{"name": "bce", "weight": 1.0}, {"name": "lovasz", "symmetric": True}]``.
    """

    def __init__(self, terms: Mapping[str, float] | Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        if isinstance(terms, Mapping):
            terms = [{"name": name, "weight": weight} for name, weight in terms.items()]
        if not terms:
            raise SaltsegError("CombinedLoss needs at least one loss")
        if not all(isinstance(t, Mapping) and "name" in t for t in terms):
            raise SaltsegError(f"each loss term needs a 'name', got {list(terms)}")
        self.names = [str(t["name"]).lower() for t in terms]
        self.weights = [float(t.get("weight", 1.0)) for t in terms]
        self.losses = nn.ModuleList(loss_from_config(t) for t in terms)

    def parts(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Unweighted value of each term, keyed by name (repeated names get a ``_i`` suffix)."""
        out: dict[str, Tensor] = {}
        for i, (name, loss) in enumerate(zip(self.names, self.losses, strict=True)):
            out[name if name not in out else f"{name}_{i}"] = loss(logits, target)
        return out

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        values = self.parts(logits, target).values()
        return sum(w * v for w, v in zip(self.weights, values, strict=True))  # type: ignore[return-value]


class LossSchedule(nn.Module):
    """Switch loss by epoch: ``LossSchedule([(0, "bce"), (20, "lovasz")]).at(25)`` is the Lovasz.

    Each loss is a module or anything :func:`loss_from_config` accepts; start epochs must increase
    from 0.
    """

    def __init__(self, stages: Sequence[tuple[int, LossSpec]]) -> None:
        super().__init__()
        starts = [int(start) for start, _ in stages]
        if (
            not starts
            or starts[0] != 0
            or any(b <= a for a, b in zip(starts, starts[1:], strict=False))
        ):
            raise SaltsegError(f"loss schedule epochs must increase from 0, got {starts}")
        self.starts = starts
        self.losses = nn.ModuleList(loss_from_config(loss) for _, loss in stages)

    def at(self, epoch: int) -> nn.Module:
        """The loss active at ``epoch`` (the last stage whose start is <= epoch)."""
        index = max(i for i, start in enumerate(self.starts) if start <= max(epoch, 0))
        return self.losses[index]


class SegmentationCriterion(nn.Module):
    """Total loss of a model output dict ``{"mask": (N,1,H,W), "cls": (N,1), "aux": [(N,1,h,w)]}``.

    ``total = mask + cls_weight * cls + aux_weight * mean(aux)``. ``cls`` is :func:`classifier_bce`
    on all images; aux logits smaller than the target are upsampled (bilinear) before the loss.
    With ``nonempty_only=True`` the mask and aux losses use only the images whose truth has salt
    (the classifier handles empty tiles); a batch without any gives them 0.

    Args:
        loss: Segmentation loss: a module, a :class:`LossSchedule` (``forward`` then needs
            ``epoch``) or anything :func:`loss_from_config` accepts.
        cls_weight: Weight of the classifier loss; skipped when 0 or when there is no ``"cls"``.
        aux_weight: Weight of the deep-supervision loss; skipped when 0 or without ``"aux"``.
        nonempty_only: Mask and aux losses on non-empty images only.
    """

    def __init__(
        self,
        loss: LossSpec | LossSchedule = "bce",
        cls_weight: float = 0.05,
        aux_weight: float = 0.1,
        nonempty_only: bool = False,
    ) -> None:
        super().__init__()
        self.loss = loss if isinstance(loss, LossSchedule) else loss_from_config(loss)
        self.cls_weight = cls_weight
        self.aux_weight = aux_weight
        self.nonempty_only = nonempty_only

    def forward(
        self, outputs: Mapping[str, Any], target: Tensor, epoch: int = 0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``(total, parts)``; ``parts`` has detached ``mask``/``cls``/``aux``/``total``."""
        if "mask" not in outputs:
            raise SaltsegError(f"model outputs have no 'mask' (keys: {sorted(outputs)})")
        logits = outputs["mask"]
        target = target.reshape(logits.shape).float()
        seg_loss = self.loss.at(epoch) if isinstance(self.loss, LossSchedule) else self.loss
        keep = nonempty(target).bool() if self.nonempty_only else None

        def seg(x: Tensor) -> Tensor:
            if x.shape[-2:] != target.shape[-2:]:
                x = F.interpolate(x, size=target.shape[-2:], mode="bilinear", align_corners=False)
            if keep is None:
                return seg_loss(x, target)
            if not keep.any():
                return x.sum() * 0
            return seg_loss(x[keep], target[keep])

        parts = {"mask": seg(logits)}
        total = parts["mask"]
        if self.cls_weight and outputs.get("cls") is not None:
            parts["cls"] = classifier_bce(outputs["cls"], target)
            total = total + self.cls_weight * parts["cls"]
        if self.aux_weight and outputs.get("aux"):
            parts["aux"] = torch.stack([seg(a) for a in outputs["aux"]]).mean()
            total = total + self.aux_weight * parts["aux"]
        parts["total"] = total
        return total, {k: v.detach() for k, v in parts.items()}
