"""Segmentation models: U-Nets on timm encoders and FRRNs, built by name."""

from saltseg.models.base import SegmentationModel
from saltseg.models.registry import (
    PRESETS,
    ModelPreset,
    create_model,
    describe_models,
    list_models,
)

__all__ = [
    "PRESETS",
    "ModelPreset",
    "SegmentationModel",
    "create_model",
    "describe_models",
    "list_models",
]
