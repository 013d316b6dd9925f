"""Self-supervised objectives on a saltseg U-Net, chosen by name.

- ``mim``: masked image modelling. Half of the 8x8 squares of each tile are hidden (filled with
  the tile's mean); the whole U-Net, its mask head read as a one-channel reconstruction,
  regresses the tile's pixels (standardised per tile), and the loss is the mean squared error
  on the hidden pixels. Trains the encoder and the decoder.
- ``vicregl``: VICRegL (Bardes et al. 2022) with lightly's loss and heads: two crops of each
  tile; a global term on the pooled deepest encoder features and a local term matching the
  cells of a stride-16 feature map between the crops, by position (through the crop
  geometry) and by feature distance. Trains the encoder.
- ``simclr``: SimCLR (Chen et al. 2020), a global contrastive baseline: lightly's projection
  head on the pooled deepest encoder features and its NT-Xent loss between two crops of each
  tile, the other tiles of the batch as negatives. Trains the encoder.

Every method holds the model (and its heads) as submodules, so its ``parameters()`` are what
the optimiser trains; :meth:`PretrainMethod.weights` gives the U-Net parts worth keeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from saltseg.errors import SaltsegError
from saltseg.models.unet import UNet
from saltseg.pretrain.views import Views, ViewSettings, add_channels, make_views, patch_mask


class PretrainMethod(nn.Module):
    """A self-supervised objective on a U-Net.

    Args:
        model: The U-Net whose encoder (and maybe decoder) is trained.
        extra_channels: The recipe's extra input channels.
        view_size: Side of the views fed to the network.
        generator: Source of every random draw (views, masks).
    """

    name: ClassVar[str]
    trains_decoder: ClassVar[bool] = False

    def __init__(
        self,
        model: UNet,
        extra_channels: Sequence[str] = (),
        view_size: int = 101,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.extra_channels = tuple(extra_channels)
        self.view_size = view_size
        self.generator = generator if generator is not None else torch.Generator()

    def loss(self, images: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
        """The objective on a batch of tiles ``(N, 1, H, W)`` in [0, 1] with their depths."""
        raise NotImplementedError

    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        """State dicts of the trained U-Net parts: ``encoder``, and ``decoder`` if trained."""
        parts = {"encoder": self.model.encoder}
        if self.trains_decoder:
            parts["decoder"] = self.model.decoder
        return {
            name: {k: v.detach().cpu().clone() for k, v in part.state_dict().items()}
            for name, part in parts.items()
        }

    def _input(self, x: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
        return add_channels(x, depths, self.extra_channels)


class MaskedImageModelling(PretrainMethod):
    """``mim``: reconstruct hidden squares of the tile with the whole U-Net.

    Args:
        patch: Side of the hidden squares in pixels.
        ratio: Share of the squares hidden.
    """

    name = "mim"
    trains_decoder = True

    def __init__(self, *args: Any, patch: int = 8, ratio: float = 0.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.patch, self.ratio = patch, ratio
        self.views = ViewSettings(size=self.view_size, crop_scale=(0.6, 1.0))

    def loss(self, images: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
        x = make_views(images, self.views, self.generator).images
        n, _, height, width = x.shape
        hidden = patch_mask(n, height, width, self.patch, self.ratio, self.generator)
        hidden = hidden.to(x.device)
        mean = x.mean((2, 3), keepdim=True)
        std = x.std((2, 3), keepdim=True)
        masked = torch.where(hidden, mean, x)
        recon = self.model(self._input(masked, depths))["mask"]
        target = (x - mean) / (std + 0.02)
        error = (recon - target) ** 2 * hidden
        return error.sum() / hidden.sum().clamp_min(1)


class _TwoCrops(PretrainMethod):
    """Two crops of each tile through the encoder (shared by the contrastive methods)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stride = self.model.encoder.stride
        side = max(stride, self.view_size // stride * stride)
        self.views = ViewSettings(size=side, crop_scale=(0.4, 1.0))
        self.channels = self.model.encoder.out_channels

    def features(
        self, images: torch.Tensor, depths: torch.Tensor
    ) -> tuple[Views, list[torch.Tensor]]:
        """Views of ``images`` and their encoder features, shallow to deep."""
        views = make_views(images, self.views, self.generator)
        return views, self.model.encoder(self._input(views.images, depths))


class VICRegL(_TwoCrops):
    """``vicregl``: global and local (dense) VICReg terms, lightly's :class:`VICRegLLoss`."""

    name = "vicregl"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from lightly.loss import VICRegLLoss
        from lightly.models.modules.heads import VicRegLLocalProjectionHead, VICRegProjectionHead

        reductions = self.model.encoder.reductions
        self.local_stage = max(i for i, r in enumerate(reductions) if r <= 16)
        deep, local = self.channels[-1], self.channels[self.local_stage]
        # Narrower than the paper's 8192-wide heads: the local covariance term costs dim^2 per
        # matched cell, and tiles are small.
        self.global_head = VICRegProjectionHead(deep, 2 * deep, 2 * deep)
        self.local_head = VicRegLLocalProjectionHead(local, local, min(local, 128))
        self.criterion = VICRegLLoss()

    def loss(self, images: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
        features, grids = [], []
        for _ in range(2):
            views, maps = self.features(images, depths)
            local = self.local_head(maps[self.local_stage].permute(0, 2, 3, 1))
            features.append((self.global_head(maps[-1].mean((2, 3))), local))
            grids.append(views.grid(local.shape[1], local.shape[2]))
        loss = self.criterion(global_view_features=features, global_view_grids=grids)
        return loss.sum()


class SimCLR(_TwoCrops):
    """``simclr``: lightly's :class:`SimCLRProjectionHead` and :class:`NTXentLoss`."""

    name = "simclr"

    def __init__(self, *args: Any, temperature: float = 0.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from lightly.loss import NTXentLoss
        from lightly.models.modules.heads import SimCLRProjectionHead

        deep = self.channels[-1]
        self.head = SimCLRProjectionHead(deep, deep, 128)
        self.criterion = NTXentLoss(temperature=temperature)

    def loss(self, images: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
        outputs = [self.head(self.features(images, depths)[1][-1].mean((2, 3))) for _ in range(2)]
        return self.criterion(*outputs)


METHODS: dict[str, type[PretrainMethod]] = {
    m.name: m for m in (MaskedImageModelling, VICRegL, SimCLR)
}


def list_methods() -> list[str]:
    """Valid method names."""
    return list(METHODS)


def check_method(name: str) -> str:
    """The method's registry name (lowercase).

    Raises:
        SaltsegError: an unknown name, with the valid ones.
    """
    key = str(name).lower()
    if key not in METHODS:
        raise SaltsegError(f"unknown pretraining method {name!r}; valid: {', '.join(METHODS)}")
    return key


def create_method(name: str, model: nn.Module, **kwargs: Any) -> PretrainMethod:
    """A pretraining method by name on ``model`` (a U-Net); kwargs go to its constructor.

    Raises:
        SaltsegError: an unknown name, or a model that is not a U-Net.
    """
    key = check_method(name)
    if not isinstance(model, UNet):
        raise SaltsegError(
            f"pretraining needs a U-Net recipe (model.name unet or a U-Net preset), got "
            f"{getattr(model, 'name', type(model).__name__)!r}"
        )
    return METHODS[key](model, **kwargs)
