"""The LightningModule: model, loss schedule, optimiser with one-cycle, validation metric."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from saltseg.config import Config, LossConfig, OptimConfig, config_from_dict
from saltseg.data.transforms import restore_geometry
from saltseg.losses import LossSchedule, SegmentationCriterion
from saltseg.metrics import image_scores, iou
from saltseg.training.optim import build_optimizer


def build_criterion(
    cfg: LossConfig, window: tuple[int, int] | None = None
) -> SegmentationCriterion:
    """The loss of a recipe: a schedule of weighted sums, plus classifier and side-output terms;
    ``window`` as :meth:`saltseg.config.Config.loss_window` gives it."""
    stages = []
    for stage in cfg.stages:
        stages.append((stage.epoch, [stage.term(name) for name in stage.terms]))
    return SegmentationCriterion(
        LossSchedule(stages),
        cls_weight=cfg.cls_weight,
        aux_weight=cfg.aux_weight,
        nonempty_only=cfg.nonempty_only,
        window=window,
    )


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Encoder and decoder parameters, the encoder at ``lr * encoder_lr_mult``."""
    encoder = getattr(model, "encoder", None)
    if encoder is None or cfg.encoder_lr_mult == 1.0:
        return [{"params": list(model.parameters()), "lr": cfg.lr}]
    encoder_ids = {id(p) for p in encoder.parameters()}
    rest = [p for p in model.parameters() if id(p) not in encoder_ids]
    return [
        {"params": list(encoder.parameters()), "lr": cfg.lr * cfg.encoder_lr_mult},
        {"params": rest, "lr": cfg.lr},
    ]


def onecycle_pct(pct_start: float, total: int) -> float:
    """``pct_start`` moved just enough that ``OneCycleLR`` can run ``total`` steps.

    ``OneCycleLR`` ends the warm-up at step ``pct_start * total - 1`` and divides by that, so a
    short run (few steps, small ``pct_start``) would divide by zero. From 3 steps on, both phases
    get at least one step; shorter runs have no warm-up.

    Args:
        pct_start: The recipe's share of steps spent warming up.
        total: The number of optimiser steps.
    """
    if total < 3:
        return min(pct_start, 0.5 / total)
    return min(max(pct_start, 2 / total), (total - 1.5) / total)


class WeightEMA:
    """Exponential moving average of a network's state (parameters and float buffers).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the first
    steps of a run do not linger in the average.

    Args:
        model: The network whose state is averaged; the average starts as a copy of it.
        decay: Weight of the average at each update once ramped up, in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current state."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in model.state_dict().items():
            average = self.state[key]
            if average.is_floating_point():
                average.lerp_(value.detach(), 1.0 - decay)
            else:
                average.copy_(value)

    @torch.no_grad()
    def swap(self, model: nn.Module) -> None:
        """Exchange ``model``'s state and the average (twice restores both)."""
        for key, value in model.state_dict().items():
            held = self.state[key].clone()
            self.state[key].copy_(value)
            value.copy_(held)


class SaltModule(L.LightningModule):
    """Trains one model of a recipe.

    The whole resolved config is saved as the checkpoint's hyper-parameters, so a checkpoint
    rebuilds its model without the config file (:func:`saltseg.training.checkpoint.load_model`).
    With ``optim.ema_decay`` the module validates with the weights' moving average and saves it
    as the checkpoint's weights; a full checkpoint (``last.ckpt``) also holds the trained
    weights, from which a resumed run goes on.

    Args:
        config: The recipe, as a :class:`Config` or its ``model_dump()``.
    """

    def __init__(self, config: Config | dict[str, Any]) -> None:
        super().__init__()
        if isinstance(config, Config):
            config = config.model_dump(mode="json")
        self.save_hyperparameters({"config": config})
        self.config = config_from_dict(config)
        from saltseg.models import create_model

        self.model = create_model(self.config.model_kwargs())
        self.channels_last = self.config.trainer.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = build_criterion(self.config.loss, self.config.loss_window())
        self.lr = self.config.optim.lr
        self._val_sums = torch.zeros(4, dtype=torch.float64)
        self.ema: WeightEMA | None = None
        self._ema_swapped = False

    def _ensure_ema(self) -> WeightEMA | None:
        if self.ema is None and self.config.optim.ema_decay > 0:
            self.ema = WeightEMA(self.model, self.config.optim.ema_decay)
        return self.ema

    def on_train_start(self) -> None:
        self._ensure_ema()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model)

    def on_train_end(self) -> None:
        if self.ema is not None:
            self.ema.swap(self.model)  # the module leaves fit holding the kept weights
            self.ema = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is None:
            return
        state = checkpoint["state_dict"]
        model_state = {k: state[f"model.{k}"] for k in self.ema.state}
        ema_state = {k: v.clone() for k, v in self.ema.state.items()}
        trained, average = (
            (ema_state, model_state) if self._ema_swapped else (model_state, ema_state)
        )
        if "optimizer_states" in checkpoint:  # a full checkpoint: keep what training goes on from
            checkpoint["ema_trained_state"] = trained
            checkpoint["ema_updates"] = self.ema.updates
        state.update({f"model.{k}": v for k, v in average.items()})

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trained = checkpoint.get("ema_trained_state")
        if trained is None or self._ensure_ema() is None:
            return
        assert self.ema is not None
        state = checkpoint["state_dict"]
        for key in self.ema.state:
            self.ema.state[key].copy_(state[f"model.{key}"])
            state[f"model.{key}"] = trained[key]
        self.ema.updates = int(checkpoint.get("ema_updates", 0))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        outputs = self(batch["image"])
        loss, parts = self.criterion(outputs, batch["mask"], epoch=self.current_epoch)
        size = len(batch["image"])
        self.log("train_loss", loss, prog_bar=True, batch_size=size)
        for name, value in parts.items():
            if name != "total":
                self.log(f"train_{name}", value, batch_size=size)
        return loss

    def on_train_epoch_start(self) -> None:
        encoder = getattr(self.model, "encoder", None)
        if encoder is not None and self.config.optim.freeze_encoder_epochs:
            frozen = self.current_epoch < self.config.optim.freeze_encoder_epochs
            for p in encoder.parameters():
                p.requires_grad_(not frozen)

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        if self.ema is not None:
            self.ema.swap(self.model)
            self._ema_swapped = True

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        outputs = self(batch["image"])
        loss, _ = self.criterion(outputs, batch["mask"], epoch=self.current_epoch)
        geometry, size = self.config.augment.geometry, self.config.augment.size
        prob = restore_geometry(torch.sigmoid(outputs["mask"].float()), geometry, size)
        truth = restore_geometry(batch["mask"].float(), geometry, size) > 0.5
        pred = prob > self.config.trainer.threshold
        truth_np, pred_np = truth.cpu().numpy()[:, 0], pred.cpu().numpy()[:, 0]
        n = len(truth_np)
        self._val_sums += torch.tensor(
            [
                float(image_scores(truth_np, pred_np).sum()),
                float(iou(truth_np, pred_np).sum()),
                float(loss.detach()) * n,
                n,
            ],
            dtype=torch.float64,
            device=self.device,
        )

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        n = max(float(sums[3]), 1.0)
        self.log("val_metric", float(sums[0]) / n, prog_bar=True, sync_dist=False)
        self.log("val_iou", float(sums[1]) / n, sync_dist=False)
        self.log("val_loss", float(sums[2]) / n, prog_bar=True, sync_dist=False)
        if self._ema_swapped:
            assert self.ema is not None
            self.ema.swap(self.model)
            self._ema_swapped = False

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.config.optim
        groups = param_groups(self.model, cfg.model_copy(update={"lr": self.lr}))
        trainer = self.config.trainer
        # Lightning cannot clip gradients under a grad scaler once the optimizer unscales them
        # itself, which fused optimizers do.
        scaled_clipping = bool(trainer.gradient_clip_val) and trainer.precision == "16-mixed"
        optimizer = build_optimizer(groups, cfg, fused=not scaled_clipping)
        if cfg.schedule == "constant":
            return {"optimizer": optimizer}
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        if cfg.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[g["lr"] for g in groups],
                total_steps=total,
                pct_start=onecycle_pct(cfg.pct_start, total),
                div_factor=cfg.div_factor,
                final_div_factor=cfg.final_div_factor,
                cycle_momentum=cfg.optimizer == "sgd",
            )
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
