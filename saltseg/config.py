"""Typed training configuration: YAML files validated by pydantic, with ``key=value`` overrides.

A recipe is one YAML file (see ``configs/``). ``load_config(path, ["optim.lr=0.01"])`` reads it,
applies the overrides (values parsed as YAML, so ``3``, ``0.1``, ``true`` and ``[0, 1]`` work) and
validates the result; unknown keys and bad values raise :class:`SaltsegError` naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from saltseg.errors import SaltsegError
from saltseg.io import write_text
from saltseg.losses import check_loss_spec
from saltseg.postprocess import DEFAULT_THRESHOLD
from saltseg.rle import TILE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(BaseModel):
    """Arguments of :func:`saltseg.models.create_model`; keys beyond ``name`` go to the model."""

    model_config = ConfigDict(extra="allow")
    name: str = "unet"


class AugmentConfig(BaseModel):
    """Augmentation and input-geometry settings (all probabilities in [0, 1]).

    Attributes:
        size: Model input side (>= 101), e.g. 101, 128 or 202.
        geometry: ``"pad"`` (reflect-pad 101 -> size, centred) or ``"resize"`` (101 -> size).
        hflip_p: Horizontal flip probability.
        vflip_p: Vertical flip probability; 0 by default since seismic depth has a direction.
        shift_limit: Largest shift, as a fraction of the side.
        scale_limit: Zoom range ``1 +- scale_limit``.
        rotate_limit: Largest rotation in degrees.
        affine_p: Probability of the shift/scale/rotate step (reflected borders).
        crop: ``"none"``; ``"random"``: reflect-pad by ``crop_pad`` and crop 101 back at random;
            ``"resized"``: crop ``crop_scale`` of the area (aspect 3/4..4/3) and resize to 101.
        crop_p: Probability of the crop step.
        crop_pad: Padding for ``crop="random"``, in pixels.
        crop_scale: Area range for ``crop="resized"``.
        brightness_limit: Brightness shift range ``+-limit``.
        contrast_limit: Contrast factor range ``1 +- limit``.
        brightness_contrast_p: Probability of the brightness/contrast step.
        gamma_limit: Gamma range in percent (100 = identity).
        gamma_p: Probability of the gamma step.
    """

    model_config = ConfigDict(extra="forbid")

    size: int = Field(TILE, ge=TILE, le=1024)
    geometry: Literal["pad", "resize"] = "pad"
    hflip_p: float = Field(0.5, ge=0.0, le=1.0)
    vflip_p: float = Field(0.0, ge=0.0, le=1.0)
    shift_limit: float = Field(0.1, ge=0.0, le=0.5)
    scale_limit: float = Field(0.1, ge=0.0, lt=1.0)
    rotate_limit: float = Field(5.0, ge=0.0, le=180.0)
    affine_p: float = Field(0.5, ge=0.0, le=1.0)
    crop: Literal["none", "random", "resized"] = "none"
    crop_p: float = Field(0.5, ge=0.0, le=1.0)
    crop_pad: int = Field(13, ge=1, le=TILE)
    crop_scale: tuple[float, float] = (0.6, 1.0)
    brightness_limit: float = Field(0.1, ge=0.0, le=1.0)
    contrast_limit: float = Field(0.1, ge=0.0, le=1.0)
    brightness_contrast_p: float = Field(0.5, ge=0.0, le=1.0)
    gamma_limit: tuple[float, float] = (80.0, 120.0)
    gamma_p: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_ranges(self) -> AugmentConfig:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        lo, hi = self.gamma_limit
        if not 0 < lo <= hi:
            raise ValueError(f"gamma_limit must satisfy 0 < low <= high, got {self.gamma_limit}")
        return self


def load_augment_config(path: str | Path) -> AugmentConfig:
    """Read an :class:`AugmentConfig` from YAML: the ``augment:`` section if any, else the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise SaltsegError(f"cannot read augment config {path}: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("augment"), dict):
        data = data["augment"]
    if not isinstance(data, dict):
        raise SaltsegError(f"augment config {path} is not a mapping")
    try:
        return AugmentConfig(**data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise SaltsegError(f"bad augment config {path}: {problems}") from None


class DataConfig(_Strict):
    """Where the tiles come from and how they are split and fed.

    Attributes:
        pseudo: Pseudo-labelled data folders (Kaggle layout, as ``saltseg predict
            --pseudo-labels`` and ``saltseg self-train`` write them). Their tiles join the
            training tiles of every fold; they are never in a validation fold, the split or the
            out-of-fold predictions.
        val_batch_size: Batch size of the validation pass; ``None`` for four times
            ``batch_size`` (no activations are kept for a backward pass, and larger batches run
            faster on a CPU).
        balance: How far to even out the coverage classes (empty, then tenths of salt
            coverage) in training: each tile is drawn with a weight of its class's tile count to
            the power ``-balance``, with replacement, as many draws an epoch as there are tiles.
            0 shuffles every tile once an epoch; 1 draws every class equally often.
        balance_empty: Whether the empty tiles take part in that balance; with ``false`` they
            keep their share of the draws and only the salt classes are evened out.
        balance_until: Epoch from which the draws go back to a plain shuffle, so that the
            last epochs see the tiles' own mix of empty and salt (the probabilities then keep
            their calibration); ``None`` balances every epoch.
    """

    root: Path | None = None
    folds_file: Path | None = None
    k: int = Field(5, ge=2, le=20)
    fold_seed: int = 0
    depth_bins: int = Field(2, ge=1)
    extra_channels: list[Literal["depth", "row"]] = []
    batch_size: int = Field(16, ge=1)
    val_batch_size: int | None = Field(None, ge=1)
    num_workers: int = Field(0, ge=0)
    pseudo: list[Path] = []
    balance: float = Field(0.0, ge=0, le=1)
    balance_empty: bool = True
    balance_until: int | None = Field(None, ge=0)


class LossStage(_Strict):
    """Loss terms (name -> weight) active from ``epoch`` on; ``options`` per term name."""

    epoch: int = Field(0, ge=0)
    terms: dict[str, float] = {"bce": 1.0}
    options: dict[str, dict[str, Any]] = {}

    @model_validator(mode="after")
    def _known_losses(self) -> LossStage:
        stray = sorted(set(self.options) - set(self.terms))
        if stray:
            raise ValueError(f"options given for {stray[0]!r}, which is not among the terms")
        try:
            check_loss_spec([self.term(name) for name in self.terms])
        except SaltsegError as err:
            raise ValueError(str(err)) from None
        return self

    def term(self, name: str) -> dict[str, Any]:
        """One term as :func:`saltseg.losses.create_loss` takes it: name, weight, options."""
        return {"name": name, "weight": self.terms[name], **self.options.get(name, {})}


class LossConfig(_Strict):
    """Segmentation loss schedule plus the weights of the classifier and side-output losses."""

    stages: list[LossStage] = [LossStage()]
    cls_weight: float = Field(0.05, ge=0)
    aux_weight: float = Field(0.1, ge=0)
    nonempty_only: bool = False
    tile_only: bool = False
    """Mask losses on the 101x101 tile only, leaving out the reflected border that the pad
    geometry adds (the metric scores the tile alone); needs ``augment.geometry: pad``."""

    @model_validator(mode="after")
    def _increasing(self) -> LossConfig:
        epochs = [s.epoch for s in self.stages]
        if not epochs or epochs[0] != 0 or sorted(set(epochs)) != epochs:
            raise ValueError(f"loss stages must start at epoch 0 and increase, got {epochs}")
        return self


class OptimConfig(_Strict):
    """Optimiser and learning-rate schedule."""

    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    encoder_lr_mult: float = Field(1.0, gt=0)
    schedule: Literal["onecycle", "constant", "cosine"] = "onecycle"
    pct_start: float = Field(0.3, gt=0, lt=1)
    div_factor: float = Field(25.0, gt=0)
    final_div_factor: float = Field(1e4, gt=0)
    freeze_encoder_epochs: int = Field(0, ge=0)
    ema_decay: float = Field(0.0, ge=0, lt=1)
    """Keep an exponential moving average of the weights (this decay per optimiser step, ramped
    up over the first steps) and validate, keep and predict with it; 0 turns it off."""


class TrainerConfig(_Strict):
    """What Lightning's Trainer gets: devices, precision, epochs."""

    epochs: int = Field(30, ge=1)
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    precision: Literal["auto", "32", "32-true", "16-mixed", "bf16-mixed", "bf16-true"] = "32"
    """Lightning's precision; ``auto`` is ``bf16-mixed`` where the device computes bfloat16
    natively (a CPU with AVX512-BF16 or AMX, a GPU that supports it) and ``32`` elsewhere."""
    seed: int = 42
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0
    gradient_clip_val: float | None = None
    log_every_n_steps: int = Field(10, ge=1)
    threshold: float = Field(DEFAULT_THRESHOLD, gt=0, lt=1)
    keep: Literal["best", "last"] = "best"
    """Which epoch's weights a fold keeps (``best.ckpt``, used for its OOF and for prediction):
    the best by validation score, or the last one (no choice made on the validation tiles)."""
    channels_last: bool = False
    """Train with the model and batches in channels-last memory layout (faster convolutions;
    the same results up to float rounding). On in the resnet34 recipes."""


class Config(_Strict):
    """A whole training recipe."""

    name: str = "run"
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()
    folds: list[int] | None = None

    @model_validator(mode="after")
    def _tile_only_needs_pad(self) -> Config:
        if self.loss.tile_only and self.augment.geometry != "pad":
            raise ValueError(
                "loss.tile_only needs augment.geometry: pad (with resize every pixel is the tile)"
            )
        return self

    def idle_schedule(self) -> list[str]:
        """The parts of the recipe's schedule that ``trainer.epochs`` never reaches.

        Stage epochs and ``data.balance_until`` are epoch numbers, not shares of the run, so a
        shorter run (``trainer.epochs=2`` on a recipe whose Lovasz term starts at epoch 2) can
        leave some out; each such part is named in one line (empty when all take effect).
        """
        epochs = self.trainer.epochs
        notes = [
            f"loss stage from epoch {stage.epoch} ({', '.join(stage.terms)}) never runs: "
            f"trainer.epochs is {epochs}"
            for stage in self.loss.stages
            if stage.epoch >= epochs
        ]
        until = self.data.balance_until
        if self.data.balance > 0 and until is not None and until >= epochs:
            notes.append(
                f"data.balance_until {until} is not reached in {epochs} epoch(s): every epoch "
                "draws balanced, none sees the tiles' own mix"
            )
        if self.optim.freeze_encoder_epochs >= epochs:
            notes.append(
                f"optim.freeze_encoder_epochs {self.optim.freeze_encoder_epochs} covers all "
                f"{epochs} epoch(s): the encoder never trains"
            )
        return notes

    def loss_window(self) -> tuple[int, int] | None:
        """``(offset, side)`` of the tile inside the model input when ``loss.tile_only``."""
        if not self.loss.tile_only or self.augment.size == TILE:
            return None
        return (self.augment.size - TILE) // 2, TILE

    def model_kwargs(self, pretrained: bool = True) -> dict[str, Any]:
        """The model's constructor arguments, with input channels set from the data config.

        Args:
            pretrained: With False, a ``pretrained`` option is turned off (to check a recipe, or
                when the weights come from a checkpoint).
        """
        kwargs = self.model.model_dump()
        kwargs["in_chans"] = 1 + len(self.data.extra_channels)
        if not pretrained and "pretrained" in kwargs:
            kwargs["pretrained"] = False
        return kwargs


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise SaltsegError(f"override {dotted!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a config tree."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SaltsegError(f"override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        _set(tree, key.strip(), value)
    return tree


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    if first["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"


def config_from_dict(tree: dict[str, Any]) -> Config:
    """Validate a config tree; the first problem becomes a one-line :class:`SaltsegError`."""
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise SaltsegError(f"bad config: {_describe(err)}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML recipe (or the defaults when ``path`` is None) and apply overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise SaltsegError(f"config file {path} does not exist")
        if not path.is_file():
            raise SaltsegError(f"config file {path} is not a file")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise SaltsegError(f"{path}: not a YAML text file") from None
        except (OSError, yaml.YAMLError) as err:
            raise SaltsegError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(tree, dict):
            raise SaltsegError(f"{path}: a config must be a mapping of sections")
    return config_from_dict(apply_overrides(tree, overrides or []))


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), path)
