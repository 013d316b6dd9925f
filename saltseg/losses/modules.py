"""``nn.Module`` wrappers of the functional losses, and the registry of losses by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from saltseg.errors import SaltsegError
from saltseg.losses.functional import (
    bce_loss,
    bootstrapped_ce,
    check_bootstrap_k,
    check_dice_smooth,
    check_empty_topk_k,
    empty_topk_loss,
    focal_loss,
    lovasz_hinge,
    soft_dice_loss,
)


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
        check_dice_smooth(smooth)
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
        check_bootstrap_k(k)
        super().__init__(k=k, per_image=per_image)


class FocalLoss(_LossModule):
    """Module form of :func:`focal_loss`."""

    fn = staticmethod(focal_loss)

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0) -> None:
        super().__init__(alpha=alpha, gamma=gamma)


class EmptyTopkLoss(_LossModule):
    """Module form of :func:`empty_topk_loss`."""

    fn = staticmethod(empty_topk_loss)

    def __init__(self, k: int = 32) -> None:
        check_empty_topk_k(k)
        super().__init__(k=k)


def _lovasz_symmetric(per_image: bool = True) -> LovaszHingeLoss:
    return LovaszHingeLoss(per_image=per_image, symmetric=True)


_LOSSES: dict[str, Callable[..., nn.Module]] = {
    "bce": BCELoss,
    "dice": DiceLoss,
    "lovasz": LovaszHingeLoss,
    "lovasz_symmetric": _lovasz_symmetric,
    "bootstrapped_ce": BootstrappedCELoss,
    "focal": FocalLoss,
    "empty_topk": EmptyTopkLoss,
}


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
