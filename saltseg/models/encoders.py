"""timm encoders for the U-Net: feature maps shallow to deep, optional scSE, weight loading."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

from saltseg.errors import SaltsegError
from saltseg.models.modules import SCSE
from saltseg.models.pretrained import FORMAT, check_pretrain_model, read_pretrain_file

PREFIXES = ("module.", "model.", "encoder.")


class Encoder(nn.Module):
    """A timm backbone built with ``features_only=True``.

    ``forward`` returns the list of stage outputs, shallow to deep; ``out_channels`` and
    ``reductions`` come from timm's ``feature_info``. With ``scse=True`` an scSE block recalibrates
    every stage output in the down path, so the next stage sees the recalibrated features.

    Args:
        name: timm model name (``timm.list_models()``).
        in_chans: Input channels; ImageNet weights are adapted by timm (summed for one channel).
        pretrained: ``False`` (random init), ``True`` (ImageNet weights through timm) or the path
            of a local ``.pth``/``.safetensors`` state dict of the timm model or of this encoder,
            or of a saltseg-pretrain file (:mod:`saltseg.models.pretrained`).
        scse: Recalibrate every stage output with scSE.
        scse_mode: ``"add"`` or ``"max"``.
        scse_reduction: cSE bottleneck ratio.
    """

    def __init__(
        self,
        name: str,
        in_chans: int = 1,
        pretrained: bool | str = False,
        scse: bool = False,
        scse_mode: str = "add",
        scse_reduction: int = 16,
    ) -> None:
        super().__init__()
        if not timm.is_model(name.split(".")[0]):
            raise SaltsegError(
                f"unknown timm encoder {name!r}; see timm.list_models() for valid names"
            )
        self.name = name
        self.in_chans = in_chans
        self.model = self._create(pretrained is True)
        self.out_channels: tuple[int, ...] = tuple(self.model.feature_info.channels())
        self.reductions: tuple[int, ...] = tuple(self.model.feature_info.reduction())
        self.stride = self.reductions[-1]
        self.scse = (
            nn.ModuleList(SCSE(c, scse_reduction, scse_mode) for c in self.out_channels)
            if scse
            else None
        )
        if pretrained and pretrained is not True:
            self.load_weights(pretrained)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs of ``x`` (N x C x H x W), shallow to deep."""
        if self.scse is None:
            return self.model(x)
        return_layers = getattr(self.model, "return_layers", None)
        if return_layers is None:
            return [gate(f) for gate, f in zip(self.scse, self.model(x), strict=True)]
        features = []
        for name, module in self.model.items():
            x = module(x)
            if name in return_layers:
                x = self.scse[len(features)](x)
                features.append(x)
                if len(features) == len(self.scse):
                    break
        return features

    def _create(self, imagenet: bool) -> nn.Module:
        if not imagenet:
            return timm.create_model(self.name, features_only=True, in_chans=self.in_chans)
        try:
            return timm.create_model(
                self.name, features_only=True, in_chans=self.in_chans, pretrained=True
            )
        except Exception as err:
            raise SaltsegError(
                f"could not get ImageNet weights for encoder {self.name!r} (offline?): set "
                f"`pretrained: false`, or pass pretrained=<path to a local .pth/.safetensors "
                f"state dict of the timm {self.name} model or of the saltseg encoder> "
                f"({type(err).__name__})"
            ) from err

    def load_weights(self, path: str | Path) -> None:
        """Load a local state dict of the timm model or of a saltseg encoder, or the encoder of
        a saltseg-pretrain file.

        Keys may carry a ``module.``/``model.``/``encoder.`` prefix; scSE weights, if present and
        this encoder has scSE, are loaded too. A first convolution with a different number of
        input channels is adapted the way timm adapts ImageNet weights (not for a
        saltseg-pretrain file, which must match the encoder and its input channels).

        Raises:
            SaltsegError: The file is missing or does not hold weights for this encoder.
        """
        path = Path(path)
        if not path.is_file():
            raise SaltsegError(f"encoder weights file not found: {path}")
        state = read_state_dict(path)
        if state.get("format") == FORMAT:
            self.load_pretrained(read_pretrain_file(path), path)
            return
        self.load_state(state, path)

    def load_pretrained(self, data: dict, path: Path) -> None:
        """Load the encoder of a saltseg-pretrain file (read by
        :func:`~saltseg.models.pretrained.read_pretrain_file`).

        Raises:
            SaltsegError: The file was pretrained for another encoder or input channels.
        """
        check_pretrain_model(data, self.name, self.in_chans, path)
        self.load_state(_strip_prefixes(data["encoder"]), path)

    def load_state(self, state: dict[str, torch.Tensor], path: Path) -> None:
        """Load a state dict (prefixes already stripped) read from ``path``, named in errors."""
        own = self.model.state_dict()
        matched = {key: _find_key(key, state) for key in own}
        missing = [key for key, found in matched.items() if found is None]
        if missing:
            raise SaltsegError(
                f"{path} does not hold weights for timm encoder {self.name!r}: "
                f"{len(missing)} of {len(own)} tensors missing (first: {missing[0]})"
            )
        self.model.load_state_dict(_adapt({k: state[matched[k]] for k in own}, own, path))
        scse = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("scse.")}
        if self.scse is not None and scse:
            self.scse.load_state_dict(scse)


def _find_key(key: str, state: dict[str, torch.Tensor]) -> str | None:
    """The key of ``state`` holding the tensor named ``key`` in timm's feature extractor.

    timm's ``features_only`` wrapper may flatten nested sequential modules, renaming
    ``features.0.conv`` to ``features_0.conv``; both spellings are accepted.
    """
    if key in state:
        return key
    head, _, rest = key.partition(".")
    for i, char in enumerate(head):
        if char == "_":
            candidate = f"{head[:i]}.{head[i + 1 :]}.{rest}"
            if candidate in state:
                return candidate
    return None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.safetensors`` file, without ``module.``-style prefixes.

    A checkpoint holding it under ``"state_dict"`` or ``"model"`` is unwrapped. A saltseg-pretrain
    file gives only ``{"format": "saltseg-pretrain"}``: read it with
    :func:`~saltseg.models.pretrained.read_pretrain_file`.

    Raises:
        SaltsegError: The file cannot be read or holds no state dict.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise SaltsegError(
            f"cannot read weights file {path} ({type(err).__name__}): expected a .pth or "
            ".safetensors state dict"
        ) from err
    if isinstance(state, dict) and state.get("format") == FORMAT:
        return {"format": FORMAT}
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise SaltsegError(f"{path} does not hold a state dict")
    return _strip_prefixes(state)


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        while key.startswith(PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _adapt(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    """Check shapes against ``own``; adapt the first conv to a different input channel count."""
    first_conv = next(key for key, value in own.items() if value.ndim == 4)
    out = {}
    for key, target in own.items():
        value = state[key]
        if key == first_conv and value.ndim == 4 and value.shape[0] == target.shape[0]:
            value = adapt_input_conv(target.shape[1], value, base_chans=value.shape[1])
        if value.shape != target.shape:
            raise SaltsegError(
                f"{path}: {key} has shape {tuple(value.shape)}, encoder expects "
                f"{tuple(target.shape)}"
            )
        out[key] = value
    return out
