"""ONNX export of fold models and their onnxruntime runner.

An exported model takes ``image`` ``(N, C, S, S)`` (dynamic batch) and returns sigmoid
probabilities: ``mask`` ``(N, 1, S, S)`` and, with a classifier, ``cls`` ``(N,)``. The file is
self-describing: its metadata holds the recipe (``saltseg_config``), the fold and the SHA-1 of
the checkpoint it came from, so ``predict --backend onnx`` needs nothing else and refuses an
export whose checkpoint has changed since.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from saltseg.checkpoints import load_model
from saltseg.config import Config, config_from_dict
from saltseg.errors import SaltsegError
from saltseg.io import atomic_path
from saltseg.runs import Run
from saltseg.tta import Runner

OPSET = 17


class ProbabilityHead(nn.Module):
    """Wraps a saltseg model so that it returns sigmoid probabilities as a tuple."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(mask,)`` or ``(mask, cls)`` probabilities of ``x``."""
        out = self.model(x)
        probs = [torch.sigmoid(out["mask"])]
        if out.get("cls") is not None:
            probs.append(torch.sigmoid(out["cls"]).reshape(-1))
        return tuple(probs)


def export_onnx(
    model: nn.Module, config: Config, path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Export ``model`` (eval mode, CPU) at the recipe's input size with a dynamic batch axis.

    Uses the TorchScript-based exporter with constant folding, which handles the models' reflect
    padding and interpolation at a fixed input size.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = ProbabilityHead(model.cpu().eval()).eval()
    size, chans = config.augment.size, 1 + len(config.data.extra_channels)
    example = torch.rand(2, chans, size, size)
    with torch.no_grad():
        names = ["mask", "cls"][: len(head(example))]
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                head,
                (example,),
                str(tmp),
                input_names=["image"],
                output_names=names,
                dynamic_axes={name: {0: "batch"} for name in ["image", *names]},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        meta = {"saltseg_config": json.dumps(config.model_dump(mode="json")), **(metadata or {})}
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return path


def export_run(run: str | Path, out: str | Path | None = None) -> list[Path]:
    """Export every fold model of ``run`` to ``out/fold_K.onnx`` (default ``RUN/onnx``)."""
    owner = Run.open(run)
    models = owner.fold_models()
    if not models:
        raise SaltsegError(f"{run}: no fold checkpoints (fold_K/best.ckpt)")
    for fold_model in models:  # replace only earlier saltseg exports, checked before writing
        path = owner.onnx_path(fold_model.fold, out)
        if path.exists() and not _is_saltseg_export(path):
            raise SaltsegError(f"{path} exists and is not a saltseg export: choose another --out")
    paths = []
    for fold_model in models:
        model, config, _ = load_model(fold_model.checkpoint)
        metadata = {
            "fold": str(fold_model.fold),
            "checkpoint": str(fold_model.checkpoint),
            "checkpoint_sha1": file_sha1(fold_model.checkpoint),
        }
        path = owner.onnx_path(fold_model.fold, out)
        paths.append(export_onnx(model, config, path, metadata))
    return paths


def _is_saltseg_export(path: Path) -> bool:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False
    return any(entry.key == "saltseg_config" for entry in proto.metadata_props)


def file_sha1(path: str | Path) -> str:
    """SHA-1 of a file's bytes (ties an export to its checkpoint)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def default_threads() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session: full graph optimisation, ``threads`` intra-op threads (default:
    the cores this process may use), no spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle threads sleep instead of spinning: the same speed here, and fair to other processes.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own kinds on a bad file
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SaltsegError(
            f"{path}: not a readable ONNX model, truncated or corrupt ({text})"
        ) from None


def session_runner(session: Any) -> Runner:
    """A :data:`~saltseg.inference.predict.Runner` of an onnxruntime session."""
    names = [output.name for output in session.get_outputs()]

    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return {
            name: torch.from_numpy(value)
            for name, value in zip(names, session.run(names, {"image": array}), strict=True)
        }

    return run


def read_metadata(session: Any) -> tuple[Config, dict[str, str]]:
    """The recipe and metadata stored in an exported model."""
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if "saltseg_config" not in meta:
        raise SaltsegError("ONNX model without saltseg metadata (export it with saltseg export)")
    return config_from_dict(json.loads(meta["saltseg_config"])), meta


def load_onnx(member: Any, threads: int | None = None) -> tuple[Runner, Config]:
    """The onnxruntime runner and recipe of an ensemble member, from ``RUN/onnx/fold_K.onnx``."""
    path = Run(member.run).onnx_path(member.fold)
    if not path.is_file():
        raise SaltsegError(
            f"{path} does not exist: run `saltseg export --run {member.run} --format onnx`"
        )
    session = onnx_session(path, threads)
    config, meta = read_metadata(session)
    if meta.get("checkpoint_sha1") != file_sha1(member.checkpoint):
        raise SaltsegError(
            f"{path} was not exported from {member.checkpoint}: export the run again "
            f"(saltseg export --run {member.run} --format onnx)"
        )
    return session_runner(session), config
