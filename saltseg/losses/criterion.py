"""The training criterion: losses from config specs, weighted sums, schedules, model outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saltseg.errors import SaltsegError
from saltseg.losses.functional import classifier_bce, nonempty
from saltseg.losses.modules import create_loss

LossSpec = str | Mapping[str, Any] | Sequence[Mapping[str, Any]] | nn.Module


def loss_from_config(spec: LossSpec) -> nn.Module:
    """Build a loss from a config spec.

    Args:
        spec: A name, ``{"name": ..., **options}``, ``{name: weight}`` (weighted sum), a list
            of ``{"name": ..., "weight": ..., **options}`` (weighted sum) or a module (returned
            as is).

    Returns:
        The loss module, ``forward(logits, target) -> scalar``.

    Raises:
        SaltsegError: Unknown loss name or bad options.
    """
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


def check_loss_spec(spec: LossSpec) -> None:
    """Raise unless ``spec`` builds a loss: every name is registered and every option accepted.

    Building a loss allocates no tensors, so this is cheap enough for config validation.

    Args:
        spec: Anything :func:`loss_from_config` accepts.

    Raises:
        SaltsegError: An unknown loss name (the message lists the valid ones), a bad option or
            a malformed spec.
    """
    try:
        loss_from_config(spec)
    except SaltsegError:
        raise
    except (TypeError, ValueError, AttributeError) as err:
        raise SaltsegError(f"bad loss spec {spec!r}: {err}") from None


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
    (the classifier handles empty tiles); a batch without any gives them 0. With ``window`` the
    mask and aux losses see only a central square of the target's grid (the 101x101 tile of a
    padded input, not its reflected border); the classifier still sees the whole target.

    Args:
        loss: Segmentation loss: a module, a :class:`LossSchedule` (``forward`` then needs
            ``epoch``) or anything :func:`loss_from_config` accepts.
        cls_weight: Weight of the classifier loss; skipped when 0 or when there is no ``"cls"``.
        aux_weight: Weight of the deep-supervision loss; skipped when 0 or without ``"aux"``.
        nonempty_only: Mask and aux losses on non-empty images only.
        window: ``(offset, side)`` of that central square, or None for the whole grid.
    """

    def __init__(
        self,
        loss: LossSpec | LossSchedule = "bce",
        cls_weight: float = 0.05,
        aux_weight: float = 0.1,
        nonempty_only: bool = False,
        window: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if window is not None and (window[0] < 0 or window[1] < 1):
            raise SaltsegError(f"loss window must be (offset >= 0, side >= 1), got {window}")
        self.window = window
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
        inside = self._crop(target)

        def seg(x: Tensor) -> Tensor:
            if x.shape[-2:] != target.shape[-2:]:
                x = F.interpolate(x, size=target.shape[-2:], mode="bilinear", align_corners=False)
            x = self._crop(x)
            if keep is None:
                return seg_loss(x, inside)
            if not keep.any():
                return x.sum() * 0
            return seg_loss(x[keep], inside[keep])

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

    def _crop(self, x: Tensor) -> Tensor:
        if self.window is None:
            return x
        offset, side = self.window
        if offset + side > min(x.shape[-2:]):
            grid = tuple(x.shape[-2:])
            raise SaltsegError(f"loss window {self.window} does not fit a {grid} grid")
        return x[..., offset : offset + side, offset : offset + side]
