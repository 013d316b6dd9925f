"""The one place where volume inference calls ``saltseg.inference``.

Windows go through the run ensemble exactly as ``saltseg predict`` sends tiles:
``Ensemble.load(...)`` then ``Ensemble.predict(windows, None, tta, batch_size)["mask"]``. The
pixel threshold comes from the runs' post-processing (``resolve_postprocess``); the tile rules
(minimum area, peak and classifier gates, constant tiles) do not apply to sections and cubes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.errors import SaltsegError
from saltseg.inference.ensemble import Ensemble, select_members
from saltseg.inference.onnx import default_threads as _threads
from saltseg.inference.pipeline import resolve_postprocess
from saltseg.tta import DEFAULT_TTA, parse_tta
from saltseg.volume.windows import WindowPredictor


@dataclass
class RunSpec:
    """Which models predict the windows, and how (all checked by :func:`check_runs`).

    Attributes:
        runs: Run folders.
        weights: Per-run weights (``"0.6,0.4"`` or a list), None for equal.
        top_k: Keep per run the K folds with the best out-of-fold score.
        backend: ``"torch"`` or ``"onnx"``.
        tta: TTA views (as ``saltseg predict``).
        batch_size: Windows per forward pass.
        postprocess: Post-processing JSON (default: the first run's ``postprocess.json``).
    """

    runs: list[str]
    weights: str | Sequence[float] | None = None
    top_k: int | None = None
    backend: str = "torch"
    tta: tuple[str, ...] = DEFAULT_TTA
    batch_size: int = 8
    postprocess: str | None = None
    members: list[dict[str, Any]] = field(default_factory=list)

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``Ensemble.load`` (picklable, for worker processes)."""
        return {
            "runs": self.runs,
            "weights": self.weights,
            "top_k": self.top_k,
            "backend": self.backend,
        }


def check_runs(spec: RunSpec) -> tuple[float, str]:
    """Validate the runs, weights, top-k and TTA of ``spec`` without loading a model.

    Fills ``spec.members`` and normalises ``spec.tta``.

    Returns:
        The pixel threshold and where it came from.

    Raises:
        SaltsegError: a bad run folder, weights, top-k, TTA view, batch size or backend.
    """
    if spec.backend not in ("torch", "onnx"):
        raise SaltsegError(f"unknown backend {spec.backend!r}; expected 'torch' or 'onnx'")
    if spec.batch_size < 1:
        raise SaltsegError(f"batch size must be at least 1, got {spec.batch_size}")
    spec.tta = parse_tta(spec.tta)
    members = select_members(spec.runs, spec.weights, spec.top_k)
    spec.members = [
        {"run": str(m.run), "fold": m.fold, "weight": m.weight, "oof_score": m.score}
        for m in members
    ]
    pp, origin = resolve_postprocess(spec.runs, spec.postprocess)
    return float(pp.threshold), origin


def load_predictor(spec: RunSpec, threads: int | None = None) -> WindowPredictor:
    """Load the ensemble of ``spec`` as a function: windows ``(N, 101, 101)`` -> probabilities."""
    ensemble = Ensemble.load(**spec.load_kwargs(), threads=threads)

    def predict(windows: np.ndarray) -> np.ndarray:
        return ensemble.predict(windows, None, spec.tta, spec.batch_size)["mask"]

    return predict


def default_threads() -> int:
    """CPU threads available to this process (shared between worker processes)."""
    return _threads()


def as_run_spec(runs: str | Path | Sequence[str | Path] | RunSpec) -> RunSpec:
    """A :class:`RunSpec` from run folders (or one given as is)."""
    if isinstance(runs, RunSpec):
        return runs
    if isinstance(runs, str | Path):
        runs = [runs]
    return RunSpec([str(r) for r in runs])
