"""The model call shared by out-of-fold predictions and inference: TTA views and batching.

Training's out-of-fold predictions and ``predict`` both go through :func:`predict_with`, with the
same default views (:data:`DEFAULT_TTA`), so post-processing tuned on the first fits the second.

A TTA view is a name: ``"none"`` (the tile as is), ``"hflip"`` (mirrored left-right, the
prediction mirrored back), or a photometric change of the seismic channel with a fixed small
factor: ``"bright"``/``"dark"`` (plus/minus 0.08), ``"contrast"`` (times 1.1), ``"gamma"``
(power 0.9). Views combine with ``+``, e.g. ``"hflip+bright"``. The result is the mean of the
sigmoid probabilities over the views, brought back to 101x101.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from saltseg.config import Config
from saltseg.data.channels import make_input
from saltseg.data.transforms import build_eval_transform, restore_geometry
from saltseg.errors import SaltsegError

Runner = Callable[[torch.Tensor], dict[str, torch.Tensor]]
"""Maps a model input ``(N, C, S, S)`` to sigmoid probabilities: ``"mask"`` ``(N, 1, S, S)`` and
optionally ``"cls"`` ``(N,)``."""

PHOTOMETRIC: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "bright": lambda x: x + 0.08,
    "dark": lambda x: x - 0.08,
    "contrast": lambda x: x * 1.1,
    "gamma": lambda x: x.clamp(min=0.0) ** 0.9,
}
TTA_NAMES = ("none", "hflip", *PHOTOMETRIC)
DEFAULT_TTA = ("none", "hflip")
"""The views of out-of-fold predictions and of ``predict`` unless told otherwise."""


def parse_tta(views: str | Sequence[str]) -> tuple[str, ...]:
    """Validate TTA views.

    A comma-separated string (as ``saltseg predict --tta`` takes it) names the views besides the
    plain tile: ``"hflip"`` means ``("none", "hflip")`` and ``"none"`` alone means no TTA. A
    sequence is taken as the exact list of views.

    Raises:
        SaltsegError: an empty list or an unknown name.
    """
    if isinstance(views, str):
        names = [v.strip() for v in views.split(",") if v.strip()]
        if names and names != ["none"]:
            names = ["none", *(v for v in names if v != "none")]
        views = names
    views = tuple(views)
    if not views:
        raise SaltsegError(f"no TTA view given; valid: {list(TTA_NAMES)} (combine with '+')")
    for view in views:
        parts = view.split("+")
        unknown = [p for p in parts if p not in TTA_NAMES]
        if unknown:
            raise SaltsegError(
                f"unknown TTA view {unknown[0]!r} in {view!r}; valid: {list(TTA_NAMES)} "
                "(combine with '+', e.g. 'hflip+bright')"
            )
    return views


def prepare_inputs(images: np.ndarray, depths: np.ndarray | None, config: Config) -> torch.Tensor:
    """Model inputs ``(N, C, S, S)`` of 101x101 tiles: geometry of the recipe, extra channels."""
    if depths is None:
        depths = np.full(len(images), np.nan, dtype=np.float32)
    transform = build_eval_transform(config.augment)
    batch = [
        make_input(transform(image=img)["image"], float(z), config.data.extra_channels)
        for img, z in zip(images, depths, strict=True)
    ]
    return torch.from_numpy(np.stack(batch))


def _view_input(x: torch.Tensor, parts: list[str]) -> torch.Tensor:
    photometric = [PHOTOMETRIC[p] for p in parts if p in PHOTOMETRIC]
    if photometric:
        seismic = x[:, :1]
        for change in photometric:
            seismic = change(seismic)
        x = torch.cat([seismic.clamp(0.0, 1.0), x[:, 1:]], dim=1)
    if "hflip" in parts:
        x = torch.flip(x, dims=[-1])
    return x


def tta_probs(runner: Runner, x: torch.Tensor, views: Sequence[str]) -> dict[str, torch.Tensor]:
    """Mean probabilities of ``runner`` over TTA ``views`` of the model input ``x``.

    Returns:
        ``{"mask": (N, 1, S, S), "cls": (N,) when the model has a classifier}``.
    """
    mask_sum: torch.Tensor | None = None
    cls_sum: torch.Tensor | None = None
    for view in views:
        parts = view.split("+")
        out = runner(_view_input(x, parts))
        prob = out["mask"].float()
        if "hflip" in parts:
            prob = torch.flip(prob, dims=[-1])
        mask_sum = prob if mask_sum is None else mask_sum + prob
        if out.get("cls") is not None:
            cls = out["cls"].float().reshape(-1)
            cls_sum = cls if cls_sum is None else cls_sum + cls
    assert mask_sum is not None
    result = {"mask": mask_sum / len(views)}
    if cls_sum is not None:
        result["cls"] = cls_sum / len(views)
    return result


def torch_runner(model: nn.Module, device: str | torch.device = "cpu") -> Runner:
    """A :data:`Runner` of a saltseg model (sigmoid of its logits)."""
    model = model.to(device).eval()

    @torch.inference_mode()
    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = model(x.to(device))
        result = {"mask": torch.sigmoid(out["mask"].float()).cpu()}
        if out.get("cls") is not None:
            result["cls"] = torch.sigmoid(out["cls"].float()).reshape(-1).cpu()
        return result

    return run


@torch.inference_mode()
def predict_with(
    runner: Runner,
    config: Config,
    images: np.ndarray,
    depths: np.ndarray | None = None,
    tta: Sequence[str] = ("none",),
    batch_size: int = 32,
    inputs: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """Probabilities of ``runner`` on 101x101 tiles, averaged over TTA views.

    Args:
        runner: The model as a :data:`Runner`.
        config: Its recipe (input geometry and channels).
        images: float32 ``(N, 101, 101)`` in [0, 1].
        depths: ``(N,)``; NaN or None when unknown.
        tta: View names (see the module docstring).
        batch_size: Tiles per forward pass.
        inputs: The prepared inputs (:func:`prepare_inputs`), to share them between models.

    Returns:
        ``{"mask": float32 (N, 101, 101), "cls": float32 (N,) when the model has a classifier}``.
    """
    views = parse_tta(tta)
    x_all = inputs if inputs is not None else prepare_inputs(images, depths, config)
    geometry, size = config.augment.geometry, config.augment.size
    masks, classes = [], []
    for start in range(0, len(x_all), batch_size):
        probs = tta_probs(runner, x_all[start : start + batch_size], views)
        masks.append(restore_geometry(probs["mask"], geometry, size)[:, 0].numpy())
        if "cls" in probs:
            classes.append(probs["cls"].numpy())
    result = {"mask": np.concatenate(masks).astype(np.float32, copy=False)}
    if classes:
        result["cls"] = np.concatenate(classes).astype(np.float32, copy=False)
    return result


def predict_probs(
    model: nn.Module,
    config: Config,
    images: np.ndarray,
    depths: np.ndarray | None = None,
    tta: Sequence[str] = ("none",),
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Salt probabilities of a torch model on ``images`` ``(N, 101, 101)``.

    Args:
        model: A saltseg model (output dict with ``"mask"`` logits and maybe ``"cls"``).
        config: Its recipe (input geometry and channels).
        images: float32 tiles in [0, 1].
        depths: Depths ``(N,)``; NaN or None when unknown.
        tta: Views to average (see the module docstring).
        batch_size: Tiles per forward pass.
        device: Where the model runs.

    Returns:
        ``{"mask": float32 (N, 101, 101), "cls": float32 (N,) or absent}``, the mean over views.
    """
    return predict_with(torch_runner(model, device), config, images, depths, tta, batch_size)
