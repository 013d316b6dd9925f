"""Full-Resolution Residual Networks (Pohlen et al. 2017), FRRN-A and FRRN-B layouts."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from saltseg.errors import SaltsegError
from saltseg.models.base import Outputs, SegmentationModel, check_options, check_pretrained
from saltseg.models.encoders import read_state_dict
from saltseg.models.modules import ClassifierHead, ConvBnAct, upsample_to
from saltseg.models.pretrained import FORMAT

# (FRRUs, channels) per pooling level: encoder from scale 2 down, decoder back up to scale 2.
LAYOUTS: dict[str, dict[str, list[tuple[int, int]]]] = {
    "a": {
        "encoder": [(3, 96), (4, 192), (2, 384), (2, 384)],
        "decoder": [(2, 192), (2, 192), (2, 96)],
    },
    "b": {
        "encoder": [(3, 96), (4, 192), (2, 384), (2, 384), (2, 384)],
        "decoder": [(2, 192), (2, 192), (2, 192), (2, 96)],
    },
}
STEM_CHANNELS = 48
RESIDUAL_CHANNELS = 32


class ResidualUnit(nn.Module):
    """Residual unit: two 3x3 conv-BN (ReLU between) plus a shortcut (1x1 when widths differ)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(in_channels, out_channels)
        self.conv2 = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the unit; same spatial size, ``out_channels`` channels."""
        return self.shortcut(x) + self.conv2(self.conv1(x))


class FRRU(nn.Module):
    """Full-resolution residual unit.

    The residual stream (full resolution) is max-pooled to the pooling stream's scale and
    concatenated with it; two conv-BN-ReLU give the new pooling stream, and a 1x1 projection of it,
    upsampled back to full resolution, is added to the residual stream.
    """

    def __init__(self, in_channels: int, out_channels: int, residual_channels: int, scale: int):
        super().__init__()
        self.scale = scale
        self.convs = nn.Sequential(
            ConvBnAct(in_channels + residual_channels, out_channels),
            ConvBnAct(out_channels, out_channels),
        )
        self.project = nn.Conv2d(out_channels, residual_channels, 1)

    def forward(self, z: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Update the pooling stream ``z`` and the residual stream ``r``."""
        pooled = F.max_pool2d(r, self.scale, self.scale)
        z = self.convs(torch.cat([z, upsample_to(pooled, z.shape[-2:], "nearest")], dim=1))
        r = r + upsample_to(self.project(z), r.shape[-2:], "nearest")
        return z, r


class FRRN(SegmentationModel):
    """FRRN for salt masks; same output contract as :class:`saltseg.models.unet.UNet`.

    Returns ``{"mask": N x 1 x H x W logits}`` plus ``"cls"`` (N x 1) with ``classifier=True``.
    The input is reflect-padded to ``2 ** levels`` and the mask cropped back.

    Args:
        layout: ``"a"`` (4 pooling levels) or ``"b"`` (5 levels), from the paper's Table 1.
        in_chans: Input channels.
        width: Multiplier on every channel count (stem 48, residual stream 32, FRRUs 96-384).
        classifier: Add the empty/non-empty classifier on the deepest pooling stream.
        dropout: Dropout before the final 1x1 conv and in the classifier.
        pretrained: ``False`` (random init) or the path of a local ``.pth``/``.safetensors``
            state dict of an FRRN of the same layout and width. There are no ImageNet weights
            for FRRN, so ``True`` raises :class:`~saltseg.errors.SaltsegError`, as timm does
            for a model without pretrained weights.
        tile_norm: Standardize each input tile on its own first, as
            :class:`~saltseg.models.unet.UNet` does.
    """

    name = "frrn"

    def __init__(
        self,
        layout: str = "a",
        in_chans: int = 1,
        width: float = 1.0,
        classifier: bool = False,
        dropout: float = 0.0,
        pretrained: bool | str | Path = False,
        tile_norm: bool = False,
    ) -> None:
        super().__init__()
        check_options("frrn", width, dropout)
        pretrained = check_pretrained("frrn", pretrained)
        if pretrained is True:
            raise SaltsegError(
                "frrn has no pretrained weights: set `pretrained: false` (train from scratch) "
                "or pass pretrained=<path to a local .pth/.safetensors FRRN state dict>"
            )
        if layout not in LAYOUTS:
            raise SaltsegError(f"unknown FRRN layout {layout!r}; valid: {', '.join(LAYOUTS)}")
        self.config = {
            "name": "frrn",
            "layout": layout,
            "in_chans": in_chans,
            "width": width,
            "classifier": classifier,
            "dropout": dropout,
            "pretrained": pretrained,
            "tile_norm": tile_norm,
        }
        self.in_chans = in_chans
        self.tile_norm = tile_norm

        def ch(c: int) -> int:
            return max(1, round(c * width))

        stem, res = ch(STEM_CHANNELS), ch(RESIDUAL_CHANNELS)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, stem, 5, padding=2, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            *(ResidualUnit(stem, stem) for _ in range(3)),
        )
        self.split = nn.Conv2d(stem, res, 1)
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        channels, scale = stem, 1
        for count, out in LAYOUTS[layout]["encoder"]:
            scale *= 2
            self.down.append(self._level(channels, ch(out), res, scale, count))
            channels = ch(out)
        self.deep_channels = channels
        for count, out in LAYOUTS[layout]["decoder"]:
            scale //= 2
            self.up.append(self._level(channels, ch(out), res, scale, count))
            channels = ch(out)
        self.stride = 2 ** len(self.down)
        self.merge = nn.Sequential(
            ResidualUnit(channels + res, stem), ResidualUnit(stem, stem), ResidualUnit(stem, stem)
        )
        self.head = nn.Sequential(
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(), nn.Conv2d(stem, 1, 1)
        )
        self.classifier = ClassifierHead(self.deep_channels, dropout) if classifier else None
        if pretrained:
            self.load_weights(pretrained)

    @staticmethod
    def _level(in_ch: int, out_ch: int, res: int, scale: int, count: int) -> nn.ModuleList:
        return nn.ModuleList(
            FRRU(in_ch if i == 0 else out_ch, out_ch, res, scale) for i in range(count)
        )

    def load_weights(self, path: str | Path) -> None:
        """Load a local state dict of an FRRN with the same layout, width and input channels.

        Raises:
            SaltsegError: The file is missing or does not hold weights for this FRRN.
        """
        path = Path(path)
        if not path.is_file():
            raise SaltsegError(f"frrn weights file not found: {path}")
        state = read_state_dict(path)
        if state.get("format") == FORMAT:
            raise SaltsegError(f"{path} holds pretrained U-Net weights: an frrn cannot load them")
        own = self.state_dict()
        missing = [key for key in own if key not in state]
        if missing:
            raise SaltsegError(
                f"{path} does not hold weights for this frrn: {len(missing)} of {len(own)} "
                f"tensors missing (first: {missing[0]})"
            )
        for key, value in own.items():
            if state[key].shape != value.shape:
                raise SaltsegError(
                    f"{path}: {key} has shape {tuple(state[key].shape)}, frrn expects "
                    f"{tuple(value.shape)} (different layout, width or in_chans?)"
                )
        self.load_state_dict({key: state[key] for key in own})

    def forward_padded(self, x: torch.Tensor) -> Outputs:
        """Segment ``x`` padded to ``2 ** levels``; see the class docstring for the outputs."""
        z = self.stem(x)
        r = self.split(z)
        sizes = []
        for level in self.down:
            sizes.append(z.shape[-2:])
            z = F.max_pool2d(z, 2, 2)
            for unit in level:
                z, r = unit(z, r)
        deep = z
        for level, size in zip(self.up, sizes[:0:-1], strict=True):
            z = upsample_to(z, size, "nearest")
            for unit in level:
                z, r = unit(z, r)
        z = torch.cat([upsample_to(z, r.shape[-2:], "nearest"), r], dim=1)
        out: Outputs = {"mask": self.head(self.merge(z))}
        if self.classifier is not None:
            out["cls"] = self.classifier(deep)
        return out
