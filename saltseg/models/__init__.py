"""Segmentation models: U-Nets on timm encoders and FRRNs, built by name."""

from saltseg.models.registry import create_model, describe_models, list_models

__all__ = ["create_model", "describe_models", "list_models"]
