"""Models by name: architectures (``unet``, ``frrn``) and named presets built on them."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from saltseg.errors import SaltsegError
from saltseg.models.base import SegmentationModel
from saltseg.models.frrn import FRRN
from saltseg.models.unet import UNet

ARCHITECTURES: dict[str, type[SegmentationModel]] = {"unet": UNet, "frrn": FRRN}

DESCRIPTIONS: dict[str, str] = {
    "unet": "U-Net on any timm encoder: create_model('unet', encoder='<timm name>', ...)",
    "frrn": "Full-resolution residual network: create_model('frrn', layout='a'|'b', ...)",
}


@dataclass(frozen=True)
class ModelPreset:
    """A named recipe: an architecture with default constructor arguments.

    Attributes:
        name: The preset's name in :func:`list_models`.
        architecture: A key of :data:`ARCHITECTURES`.
        kwargs: Constructor arguments; kwargs given to :func:`create_model` override them.
        description: One line for ``saltseg models``.
    """

    name: str
    architecture: str
    kwargs: Mapping[str, Any]
    description: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))


_COMPETITION_UNET = {
    "scse_encoder": True,
    "scse_decoder": True,
    "hypercolumn": True,
    "classifier": True,
}

PRESETS: dict[str, ModelPreset] = {
    preset.name: preset
    for preset in (
        ModelPreset(
            "resnet34",
            "unet",
            {"encoder": "resnet34", **_COMPETITION_UNET},
            "U-Net on timm resnet34 with scSE (down and up), hypercolumn and salt classifier",
        ),
        ModelPreset(
            "seresnext50_32x4d",
            "unet",
            {"encoder": "seresnext50_32x4d", **_COMPETITION_UNET},
            "U-Net on timm seresnext50_32x4d with scSE, hypercolumn and salt classifier",
        ),
        ModelPreset(
            "inception_v4",
            "unet",
            {"encoder": "inception_v4", **_COMPETITION_UNET},
            "U-Net on timm inception_v4 with scSE, hypercolumn and salt classifier",
        ),
        ModelPreset(
            "frrn_a",
            "frrn",
            {"layout": "a", "classifier": True},
            "FRRN-A (Pohlen et al. 2017): full-resolution residual stream, 4 pooling levels",
        ),
        ModelPreset(
            "frrn_b",
            "frrn",
            {"layout": "b", "classifier": True},
            "FRRN-B (Pohlen et al. 2017): full-resolution residual stream, 5 pooling levels",
        ),
    )
}


def list_models() -> list[str]:
    """Valid model names: the presets, then the architectures."""
    return [*PRESETS, *ARCHITECTURES]


def describe_models() -> dict[str, str]:
    """One-line description of every valid model name, presets first."""
    return {**{name: p.description for name, p in PRESETS.items()}, **DESCRIPTIONS}


def create_model(name: str | Mapping[str, Any] | Any = "unet", **kwargs: Any) -> SegmentationModel:
    """Build a segmentation model by name or from a config.

    Args:
        name: A name from :func:`list_models`, or a config: a mapping (or pydantic model or
            dataclass) with a ``"name"`` key plus constructor kwargs, such as ``model.config``.
        **kwargs: Constructor kwargs; they override the preset's and the config's.

    Returns:
        The model; ``model.config`` holds ``"name"`` and every constructor kwarg, so
        ``create_model(model.config)`` rebuilds the same architecture. To load a checkpoint
        without downloading weights, pass ``pretrained=False`` next to the config.

    Raises:
        SaltsegError: Unknown model name or bad kwargs.
    """
    if not isinstance(name, str):
        config = _as_dict(name)
        if "name" not in config:
            raise SaltsegError(f"model config needs a 'name' key; valid: {_valid()}")
        name = config.pop("name")
        kwargs = {**config, **kwargs}
    if not isinstance(name, str):
        raise SaltsegError(f"model name must be a string, got {name!r}")
    key = name.lower()
    if key in PRESETS:
        preset = PRESETS[key]
        key, kwargs = preset.architecture, {**preset.kwargs, **kwargs}
    if key not in ARCHITECTURES:
        raise SaltsegError(f"unknown model {name!r}; valid: {_valid()}")
    build = ARCHITECTURES[key]
    params = inspect.signature(build).parameters
    valid = list(params)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise SaltsegError(
            f"unknown argument(s) {', '.join(unknown)} for model {name!r}; "
            f"valid: {', '.join(valid)}"
        )
    for arg, value in kwargs.items():
        # Switches (annotated plain ``bool``) take true or false only, not "yes" or 1.
        if params[arg].annotation in (bool, "bool") and not isinstance(value, bool):
            raise SaltsegError(f"model {name!r}: {arg} must be true or false, got {value!r}")
    return build(**kwargs)


def _valid() -> str:
    return ", ".join(list_models())


def _as_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "model_dump"):
        return dict(config.model_dump())
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    raise SaltsegError(f"model config must be a name or a mapping, got {type(config).__name__}")
