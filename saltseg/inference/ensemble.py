"""Ensembles of k-fold runs: which fold models take part, with what weight, and their mean.

Every fold model of a run (:meth:`saltseg.runs.Run.fold_models`) is a member. ``top_k`` keeps,
per run, the K folds with the best out-of-fold score. A run's weight is
shared equally between its members, so the ensemble is the weighted mean over runs of each run's
mean over folds. Members may differ in input size and geometry; they must agree on the task:
the same input channels and the same outputs (mask only, or mask and classifier).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saltseg.checkpoints import load_model
from saltseg.config import Config
from saltseg.errors import SaltsegError
from saltseg.inference.onnx import load_onnx
from saltseg.runs import Run
from saltseg.tta import DEFAULT_TTA, Runner, predict_with, prepare_inputs, torch_runner


@dataclass
class Member:
    """One fold model of an ensemble.

    Attributes:
        run: The run folder.
        fold: The fold index.
        checkpoint: Its checkpoint.
        weight: Its share of the ensemble (all members sum to 1).
        score: Its out-of-fold score, when ``score.json`` exists.
    """

    run: Path
    fold: int
    checkpoint: Path
    weight: float
    score: float | None = None


def parse_weights(text: str | Sequence[float] | None, n_runs: int) -> list[float]:
    """Per-run weights from ``"0.5,0.5"`` (or a list), normalised to sum 1; None means equal."""
    if text is None:
        return [1.0 / n_runs] * n_runs
    try:
        values = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        raise SaltsegError(f"weights must be comma-separated numbers, got {text!r}") from None
    if len(values) != n_runs:
        raise SaltsegError(f"{len(values)} weight(s) given for {n_runs} run(s)")
    if any(v < 0 or not np.isfinite(v) for v in values) or sum(values) <= 0:
        raise SaltsegError(f"weights must be non-negative with a positive sum, got {values}")
    total = sum(values)
    return [v / total for v in values]


def select_members(
    runs: Sequence[str | Path],
    weights: str | Sequence[float] | None = None,
    top_k: int | None = None,
) -> list[Member]:
    """The fold models of ``runs`` that take part, with their weights (runs of weight 0 drop out).

    Raises:
        SaltsegError: a run folder without fold checkpoints, bad weights, ``top_k`` below 1 or
            above a run's number of folds, or a fold without ``score.json`` when ``top_k`` is set.
    """
    if not runs:
        raise SaltsegError("no run given")
    run_weights = parse_weights(weights, len(runs))
    members = []
    for run, run_weight in zip(map(Path, runs), run_weights, strict=True):
        models = {m.fold: m for m in Run.open(run).fold_models()}
        if not models:
            raise SaltsegError(f"{run}: no fold checkpoints (fold_K/best.ckpt)")
        ckpts = {fold: m.checkpoint for fold, m in models.items()}
        scores = {fold: m.score for fold, m in models.items()}
        folds = list(ckpts)
        if top_k is not None:
            if not 1 <= top_k <= len(ckpts):
                raise SaltsegError(f"--top-k {top_k} but {run} has {len(ckpts)} fold(s)")
            missing = [f for f in folds if scores[f] is None]
            if missing:
                raise SaltsegError(f"--top-k needs {run}/fold_{missing[0]}/score.json")
            folds = sorted(sorted(folds, key=lambda f: -scores[f])[:top_k])
        if run_weight > 0:
            members += [Member(run, f, ckpts[f], run_weight / len(folds), scores[f]) for f in folds]
    return members


def _describe_task(config: Config, outputs: tuple[str, ...]) -> str:
    return f"input channels {['image', *config.data.extra_channels]}, outputs {list(outputs)}"


class Ensemble:
    """Loaded fold models and their weights; :meth:`predict` gives the weighted mean.

    Args:
        members: The members (see :func:`select_members`).
        configs: The recipe of each member.
        runners: Each member as a :data:`~saltseg.inference.predict.Runner`.
    """

    def __init__(self, members: list[Member], configs: list[Config], runners: list[Runner]):
        self.members, self.configs, self.runners = members, configs, runners
        outputs = []
        for config, runner in zip(configs, runners, strict=True):
            size = config.augment.size
            probe = torch.zeros(1, 1 + len(config.data.extra_channels), size, size)
            outputs.append(tuple(sorted(runner(probe))))
        tasks = [_describe_task(c, o) for c, o in zip(configs, outputs, strict=True)]
        for member, task in zip(members[1:], tasks[1:], strict=True):
            if task != tasks[0]:
                raise SaltsegError(
                    f"cannot ensemble {members[0].checkpoint} ({tasks[0]}) with "
                    f"{member.checkpoint} ({task})"
                )
        self.has_cls = "cls" in outputs[0]

    @classmethod
    def load(
        cls,
        runs: Sequence[str | Path],
        weights: str | Sequence[float] | None = None,
        top_k: int | None = None,
        backend: str = "torch",
        device: str = "cpu",
        threads: int | None = None,
    ) -> Ensemble:
        """Load the members of ``runs`` with the ``"torch"`` or ``"onnx"`` backend.

        The ONNX backend reads ``RUN/onnx/fold_K.onnx`` written by ``saltseg export``.
        """
        members = select_members(runs, weights, top_k)
        configs, runners = [], []
        for member in members:
            if backend == "torch":
                model, config, _ = load_model(member.checkpoint)
                runner = torch_runner(model, device)
            elif backend == "onnx":
                runner, config = load_onnx(member, threads=threads)
            else:
                raise SaltsegError(f"unknown backend {backend!r}; expected 'torch' or 'onnx'")
            configs.append(config)
            runners.append(runner)
        return cls(members, configs, runners)

    def predict(
        self,
        images: np.ndarray,
        depths: np.ndarray | None = None,
        tta: Sequence[str] = DEFAULT_TTA,
        batch_size: int = 8,
    ) -> dict[str, np.ndarray]:
        """Weighted mean probabilities of all members on tiles ``(N, 101, 101)``."""
        inputs: dict[tuple[Any, ...], torch.Tensor] = {}
        result: dict[str, np.ndarray] = {}
        for member, config, runner in zip(self.members, self.configs, self.runners, strict=True):
            key = (config.augment.size, config.augment.geometry, *config.data.extra_channels)
            if key not in inputs:
                inputs[key] = prepare_inputs(images, depths, config)
            probs = predict_with(runner, config, images, depths, tta, batch_size, inputs[key])
            for name, value in probs.items():
                weighted = member.weight * value
                result[name] = weighted if name not in result else result[name] + weighted
        return result


def ensemble_oof(
    runs: Sequence[str | Path], weights: str | Sequence[float] | None = None
) -> dict[str, Any]:
    """Out-of-fold probabilities of an ensemble: the weighted mean of the runs' OOF.

    Runs must share the same split (``folds.csv``), so that every tile is out-of-fold for the
    same fold in all of them.
    """
    run_weights = parse_weights(weights, len(runs))
    first = Run.open(runs[0])
    result = first.oof()
    result["mask"] = result["mask"] * run_weights[0]
    if "cls" in result:
        result["cls"] = result["cls"] * run_weights[0]
    split = None
    for run, weight in zip(map(Path, runs[1:]), run_weights[1:], strict=True):
        other_run = Run.open(run)
        if split is None:
            split = first.folds_frame()[["id", "fold"]].sort_values("id")
        other = other_run.folds_frame()[["id", "fold"]].sort_values("id")
        if not np.array_equal(split.to_numpy(), other.to_numpy()):
            raise SaltsegError(
                f"{run} and {first.root} were trained on different folds: tune them separately"
            )
        oof = other_run.oof()
        if oof["ids"] != result["ids"]:
            raise SaltsegError(f"{run}: its out-of-fold tiles differ from those of {first.root}")
        result["mask"] += weight * oof["mask"]
        if "cls" in result and "cls" in oof:
            result["cls"] += weight * oof["cls"]
        else:
            result.pop("cls", None)
    return result
