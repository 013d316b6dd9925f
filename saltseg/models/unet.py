"""U-Net on a timm encoder with scSE, hypercolumn and deep supervision heads."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from saltseg.errors import SaltsegError
from saltseg.models.base import Outputs, SegmentationModel, check_options, check_pretrained
from saltseg.models.encoders import Encoder
from saltseg.models.modules import SCSE, ClassifierHead, ConvBnAct, HypercolumnHead, upsample_to
from saltseg.models.pretrained import read_if_pretrain

log = logging.getLogger(__name__)


class DecoderBlock(nn.Module):
    """Upsample to the skip's exact size, concatenate it, conv-BN-ReLU twice, optional scSE."""

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, scse: SCSE | None = None
    ) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(in_channels + skip_channels, out_channels)
        self.conv2 = ConvBnAct(out_channels, out_channels)
        self.scse = scse if scse is not None else nn.Identity()

    def forward(
        self, x: torch.Tensor, size: torch.Size, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decode ``x`` to ``size``: the skip's size, or the input size for the last block."""
        x = upsample_to(x, size, "nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.scse(self.conv2(self.conv1(x)))


def default_decoder_channels(encoder_channels: Sequence[int], width: float = 1.0) -> list[int]:
    """Decoder widths derived from the encoder, deepest block first.

    One block per encoder stage: block ``i`` gets ``16 * 2**(n-1-i)`` channels, capped by the
    channels of the skip it merges, times ``width``. For a resnet34 this is smp's
    (256, 128, 64, 32, 16).
    """
    n = len(encoder_channels)
    skips = list(encoder_channels[-2::-1]) + [None]
    widths = []
    for i, skip in enumerate(skips):
        base = 16 * 2 ** (n - 1 - i)
        widths.append(max(1, round(width * (base if skip is None else min(base, skip)))))
    return widths


def fuse_logits(mask: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """Logit of ``sigmoid(mask) * sigmoid(cls)``: pixel-salt logits gated by a tile-salt logit.

    With ``p = 1 / ((1 + e^-a)(1 + e^-b))``, ``p / (1 - p) = 1 / (e^-a + e^-b + e^-(a+b))``, so
    the fused logit is ``-logsumexp(-a, -b, -a-b)``: exact and stable for any magnitudes, close
    to ``min(a, b)`` when both are large.

    Args:
        mask: N x 1 x H x W pixel logits.
        cls: N x 1 tile logits.

    Returns:
        N x 1 x H x W fused logits.
    """
    tile = cls.reshape(-1, 1, 1, 1).to(mask.dtype).expand_as(mask)
    return -torch.logsumexp(torch.stack([-mask, -tile, -mask - tile]), dim=0)


class UNet(SegmentationModel):
    """U-Net for salt masks: any timm encoder, any input size.

    ``forward`` returns ``{"mask": N x 1 x H x W logits}``, plus ``"cls"`` (N x 1 logit of "tile has
    salt") with ``classifier=True``, plus ``"aux"`` (list of N x 1 x H x W logits, one per decoder
    block) with ``side_outputs=True`` in training mode. The input is reflect-padded to the encoder
    stride and the outputs are cropped back.

    Args:
        encoder: timm model name.
        in_chans: Input channels (1 for the seismic image; more for extra channels like depth).
        pretrained: ``False``, ``True`` (ImageNet through timm) or a local weights file: a state
            dict of the encoder, or a saltseg-pretrain file (``saltseg pretrain``), whose
            encoder is loaded, and its decoder too when the shapes match.
        decoder_channels: Width of each decoder block, deepest first; derived from the encoder
            (:func:`default_decoder_channels`) when ``None``.
        decoder_width: Multiplier on the derived decoder widths.
        scse_encoder: scSE on every encoder stage output (down path).
        scse_decoder: scSE on every decoder block output (up path).
        scse_mode: ``"add"`` or ``"max"``.
        scse_reduction: cSE bottleneck ratio.
        hypercolumn: Upsample every decoder block output to full size and concatenate them;
            the head is then conv-BN-ReLU + 1x1 conv on that hypercolumn
            (:class:`~saltseg.models.modules.HypercolumnHead`). Without it the head is a 3x3
            conv on the last decoder block, as in smp.
        classifier: Add the empty/non-empty classifier on the deepest encoder features.
        fuse_classifier: Make ``"mask"`` the logit of P(tile has salt) x P(pixel is salt | tile
            has salt): the classifier's probability times the segmentation head's, per pixel
            (:func:`fuse_logits`). Every mask loss then trains the classifier too, and the mask
            a checkpoint draws is empty where the classifier says the tile is. Needs
            ``classifier``; ``"cls"`` stays the classifier's own logit.
        fuse_aux: With ``fuse_classifier``, also return the segmentation head's own logits (before
            the classifier's gate) as an ``"aux"`` output in training, so that the mask loss
            (weighted by ``loss.aux_weight``) teaches that head to stay low on empty tiles too
            rather than leave them to the classifier alone.
        classifier_pool: How the classifier pools the deepest features: ``"avg"`` or
            ``"avgmax"`` (:class:`~saltseg.models.modules.GlobalPool`).
        classifier_stages: The classifier also reads every decoder stage's map, pooled the same
            way, so fine-scale evidence of a small salt body reaches the tile decision.
        context: Give the mask head the image-level view the classifier has: the deepest
            encoder features, averaged over the image, projected and added at every pixel of the
            head's input (with ``hypercolumn``, inside
            :class:`~saltseg.models.modules.HypercolumnHead`; otherwise on the last decoder
            block). Every logit can then follow whether the tile as a whole looks like salt.
        side_outputs: Add a 1x1 logit head per decoder block (returned as ``"aux"`` in training).
        dropout: Dropout before the final head and in the classifier.
        tile_norm: Standardize each input tile on its own before the encoder
            (:func:`~saltseg.models.modules.standardize`): the model sees each tile's contrast
            pattern whatever its gain and brightness.
    """

    name = "unet"

    def __init__(
        self,
        encoder: str = "resnet34",
        in_chans: int = 1,
        pretrained: bool | str | Path = False,
        decoder_channels: Sequence[int] | None = None,
        decoder_width: float = 1.0,
        scse_encoder: bool = False,
        scse_decoder: bool = False,
        scse_mode: str = "add",
        scse_reduction: int = 16,
        hypercolumn: bool = False,
        classifier: bool = False,
        context: bool = False,
        side_outputs: bool = False,
        dropout: float = 0.0,
        fuse_classifier: bool = False,
        fuse_aux: bool = False,
        classifier_pool: str = "avg",
        classifier_stages: bool = False,
        tile_norm: bool = False,
    ) -> None:
        super().__init__()
        check_options("unet", decoder_width, dropout)
        if fuse_classifier and not classifier:
            raise SaltsegError("unet: fuse_classifier needs classifier: true")
        if fuse_aux and not fuse_classifier:
            raise SaltsegError("unet: fuse_aux needs fuse_classifier: true")
        if (classifier_stages or classifier_pool != "avg") and not classifier:
            raise SaltsegError("unet: classifier_pool and classifier_stages need classifier: true")
        pretrained = check_pretrained("unet", pretrained)
        self.config = {
            "name": "unet",
            "encoder": encoder,
            "in_chans": in_chans,
            "pretrained": pretrained,
            "decoder_channels": None if decoder_channels is None else list(decoder_channels),
            "decoder_width": decoder_width,
            "scse_encoder": scse_encoder,
            "scse_decoder": scse_decoder,
            "scse_mode": scse_mode,
            "scse_reduction": scse_reduction,
            "hypercolumn": hypercolumn,
            "classifier": classifier,
            "context": context,
            "side_outputs": side_outputs,
            "dropout": dropout,
            "fuse_classifier": fuse_classifier,
            "fuse_aux": fuse_aux,
            "classifier_pool": classifier_pool,
            "classifier_stages": classifier_stages,
            "tile_norm": tile_norm,
        }
        self.tile_norm = tile_norm
        self.fuse_classifier = fuse_classifier
        self.fuse_aux = fuse_aux
        self.in_chans = in_chans
        pretrain = read_if_pretrain(pretrained) if isinstance(pretrained, str) else None
        self.encoder = Encoder(
            encoder,
            in_chans,
            False if pretrain is not None else pretrained,
            scse_encoder,
            scse_mode,
            scse_reduction,
        )
        if pretrain is not None:
            self.encoder.load_pretrained(pretrain, Path(pretrained))
        self.stride = self.encoder.stride
        enc = self.encoder.out_channels
        if decoder_channels is None:
            widths = default_decoder_channels(enc, decoder_width)
        else:
            widths = list(decoder_channels)
            if len(widths) != len(enc):
                raise SaltsegError(
                    f"decoder_channels needs {len(enc)} widths for encoder {encoder!r} "
                    f"(one per stage), got {len(widths)}"
                )
        self.decoder_channels = tuple(widths)
        skips = list(enc[-2::-1]) + [0]
        ins = [enc[-1], *widths[:-1]]
        self.decoder = nn.ModuleList(
            DecoderBlock(i, s, o, SCSE(o, scse_reduction, scse_mode) if scse_decoder else None)
            for i, s, o in zip(ins, skips, widths, strict=True)
        )
        self.hypercolumn = hypercolumn
        self.hypercolumn_channels = sum(widths) if hypercolumn else 0
        self.context = context
        # Without a hypercolumn, the context is added to the last decoder block's output.
        self.context_proj = (
            nn.Linear(enc[-1], widths[-1], bias=False) if context and not hypercolumn else None
        )
        if hypercolumn:
            self.head = HypercolumnHead(widths, widths[-1], dropout, enc[-1] if context else 0)
        else:
            self.head = nn.Sequential(
                nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
                nn.Conv2d(widths[-1], 1, 3, padding=1),
            )
        self.classifier_stages = classifier_stages
        cls_in = enc[-1] + (sum(widths) if classifier_stages else 0)
        self.classifier = ClassifierHead(cls_in, dropout, classifier_pool) if classifier else None
        self.side_heads = (
            nn.ModuleList(nn.Conv2d(w, 1, 1) for w in widths) if side_outputs else None
        )
        self.pretrained_parts: tuple[str, ...] = ()
        if pretrain is not None:
            self.pretrained_parts = ("encoder", *self._load_decoder(pretrain, Path(pretrained)))

    def _load_decoder(self, pretrain: dict, path: Path) -> tuple[str, ...]:
        """Load the decoder blocks of a saltseg-pretrain file when their shapes match."""
        state, own = pretrain.get("decoder"), self.decoder.state_dict()
        if not isinstance(state, dict):
            return ()
        same = set(state) == set(own) and all(state[k].shape == v.shape for k, v in own.items())
        if not same:
            log.info("%s: decoder not loaded, its shapes differ from this U-Net's", path)
            return ()
        self.decoder.load_state_dict(state)
        return ("decoder",)

    def forward_padded(self, x: torch.Tensor) -> Outputs:
        """Segment ``x`` padded to the encoder stride; see the class docstring for the outputs."""
        size = x.shape[-2:]
        features = self.encoder(x)
        skips = [*features[-2::-1], None]
        y = features[-1]
        stages = []
        for block, skip in zip(self.decoder, skips, strict=True):
            y = block(y, size if skip is None else skip.shape[-2:], skip)
            stages.append(y)
        pooled = features[-1].mean((2, 3)) if self.context else None
        if self.hypercolumn:
            mask = self.head(stages, size, pooled)
        else:
            if self.context_proj is not None:
                y = y + self.context_proj(pooled)[:, :, None, None]
            mask = self.head(y)
        out: Outputs = {"mask": mask}
        aux = []
        if self.classifier is not None:
            deep = features[-1]
            out["cls"] = self.classifier([deep, *stages] if self.classifier_stages else deep)
            if self.fuse_classifier:
                out["mask"] = fuse_logits(mask, out["cls"])
                if self.fuse_aux and self.training:
                    aux.append(mask)
        if self.side_heads is not None and self.training:
            aux += [
                upsample_to(head(s), size, "bilinear")
                for head, s in zip(self.side_heads, stages, strict=True)
            ]
        if aux:
            out["aux"] = aux
        return out
