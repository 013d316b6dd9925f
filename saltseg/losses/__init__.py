"""Segmentation losses on logits: functional cores, ``nn.Module`` wrappers and the criterion.

- :mod:`saltseg.losses.functional`: pure functions on logits (``bce_loss``, ``lovasz_hinge``...).
- :mod:`saltseg.losses.modules`: their module forms and the registry (``create_loss``).
- :mod:`saltseg.losses.criterion`: specs from configs, weighted sums, schedules, and the
  :class:`SegmentationCriterion` that scores a model's output dict.
"""

from saltseg.losses.criterion import (
    CombinedLoss,
    LossSchedule,
    LossSpec,
    SegmentationCriterion,
    check_loss_spec,
    loss_from_config,
)
from saltseg.losses.functional import (
    bce_loss,
    bootstrapped_ce,
    classifier_bce,
    empty_topk_loss,
    focal_loss,
    lovasz_hinge,
    nonempty,
    soft_dice_loss,
)
from saltseg.losses.modules import (
    BCELoss,
    BootstrappedCELoss,
    DiceLoss,
    EmptyTopkLoss,
    FocalLoss,
    LovaszHingeLoss,
    create_loss,
    list_losses,
)

__all__ = [
    "BCELoss",
    "BootstrappedCELoss",
    "CombinedLoss",
    "DiceLoss",
    "EmptyTopkLoss",
    "FocalLoss",
    "LossSchedule",
    "LossSpec",
    "LovaszHingeLoss",
    "SegmentationCriterion",
    "bce_loss",
    "bootstrapped_ce",
    "check_loss_spec",
    "classifier_bce",
    "create_loss",
    "empty_topk_loss",
    "focal_loss",
    "list_losses",
    "loss_from_config",
    "lovasz_hinge",
    "nonempty",
    "soft_dice_loss",
]
