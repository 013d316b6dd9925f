"""Raw amplitudes -> the [0, 1] range of the 8-bit training tiles, and vertical resampling.

The models learned on 8-bit grayscale tiles in [0, 1] whose mid-gray is zero amplitude; raw
seismic amplitudes (thousands for an integer cube, a few units for a float one) mean nothing to
them. Amplitudes are clipped at robust percentiles (1st/99th by default) measured once on a
sample of traces of the whole input, so that every window of every line is scaled alike, and
mapped linearly to [0, 1]. The clip values may be given instead, or measured per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from saltseg.errors import SaltsegError
from saltseg.volume.store import slabs

if TYPE_CHECKING:
    from saltseg.volume.io import Volume

SAMPLE_TRACES = 4096


@dataclass(frozen=True)
class Scaling:
    """How amplitudes become [0, 1].

    Attributes:
        percentiles: Lower and upper clip percentiles.
        clip: Clip values given by the user (amplitudes), or None to measure them.
        per_line: Measure the percentiles on each line instead of on the whole input.
    """

    percentiles: tuple[float, float] = (1.0, 99.0)
    clip: tuple[float, float] | None = None
    per_line: bool = False

    def __post_init__(self) -> None:
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise SaltsegError(f"percentiles must satisfy 0 <= low < high <= 100, got {low},{high}")
        if self.clip is not None:
            if not all(np.isfinite(self.clip)) or self.clip[0] >= self.clip[1]:
                raise SaltsegError(f"clip values must be finite with low < high, got {self.clip}")
            if self.per_line:
                raise SaltsegError("give either clip values or per-line statistics, not both")


def clip_values(
    values: np.ndarray, percentiles: Sequence[float], where: str
) -> tuple[float, float]:
    """The two percentiles of finite ``values``.

    Raises:
        SaltsegError: no values, non-finite values, or constant amplitudes.
    """
    values = np.asarray(values, dtype=np.float32).ravel()
    if values.size == 0:
        raise SaltsegError(f"{where}: no amplitudes to scale")
    if not np.isfinite(values).all():
        raise SaltsegError(f"{where}: amplitudes contain NaN or infinity")
    low, high = (float(v) for v in np.percentile(values, list(percentiles)))
    if high <= low:
        vmin, vmax = float(values.min()), float(values.max())
        if vmax <= vmin:
            raise SaltsegError(f"{where}: amplitudes are constant ({vmin:g}); nothing to segment")
        low, high = vmin, vmax  # mostly constant (e.g. mostly zero): use the full range
    return low, high


def sample_rows(n: int, budget: int = SAMPLE_TRACES) -> np.ndarray:
    """Up to ``budget`` evenly spread indices of ``n`` traces (deterministic)."""
    if n <= budget:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, budget).round().astype(np.int64))


def apply_clip(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip ``values`` to ``[low, high]`` and map that range linearly to [0, 1] (float32)."""
    out = np.asarray(values, dtype=np.float32) - np.float32(low)
    out *= np.float32(1.0 / (high - low))
    return np.clip(out, 0.0, 1.0, out=out)


def resample(values: np.ndarray, length: int, axis: int = -1) -> np.ndarray:
    """Linear interpolation of ``values`` along ``axis`` to ``length`` evenly spread samples.

    The first and last samples stay where they are, so :func:`resample` back to the original
    length inverts it up to interpolation error.
    """
    values = np.moveaxis(np.asarray(values, dtype=np.float32), axis, -1)
    n = values.shape[-1]
    if length == n:
        return np.moveaxis(values, -1, axis)
    pos = np.linspace(0, n - 1, length)
    lo = np.minimum(pos.astype(np.int64), n - 2) if n > 1 else np.zeros(length, np.int64)
    frac = (pos - lo).astype(np.float32)
    hi = np.minimum(lo + 1, n - 1)
    out = values[..., lo] * (1 - frac) + values[..., hi] * frac
    return np.moveaxis(out, -1, axis)


def resampled_length(n: int, factor: float) -> int:
    """Samples after resampling ``n`` samples by ``factor`` (2: twice as many)."""
    if not 0.1 <= factor <= 10:
        raise SaltsegError(f"--resample must be between 0.1 and 10, got {factor}")
    return max(2, round((n - 1) * factor) + 1)


def measure_clip(volume: Volume, scaling: Scaling, slab_mb: float = 64.0) -> tuple[float, float]:
    """Global clip values: given, or percentiles of a sample of live traces of the whole input.

    Reads the whole input once (a slab of inlines at a time) to check that it is finite.

    Raises:
        SaltsegError: NaN or infinite amplitudes, constant amplitudes.
    """
    where = str(volume.path) if volume.path else "input"
    _, n_traces, n_samples = volume.shape
    live_cells = np.flatnonzero(volume.live.ravel())
    if len(live_cells) == 0:
        raise SaltsegError(f"{where}: no trace to predict")
    chosen = np.zeros(volume.live.size, dtype=bool)
    chosen[live_cells[sample_rows(len(live_cells))]] = True
    chosen = chosen.reshape(volume.live.shape)
    picked = []
    for start, stop in slabs(volume.shape[0], n_traces * n_samples * 4, slab_mb, 1):
        raw = volume.read(0, start, stop)
        live = volume.live[start:stop]
        if not np.isfinite(raw[live]).all():
            raise SaltsegError(f"{where}: amplitudes contain NaN or infinity")
        picked.append(raw[chosen[start:stop]])
    values = np.concatenate(picked)
    if scaling.clip is not None:
        clip_values(values, scaling.percentiles, where)  # still refuse constant amplitudes
        return scaling.clip
    if volume.integer_range is not None:
        clip_values(values, scaling.percentiles, where)
        return volume.integer_range
    return clip_values(values, scaling.percentiles, where)
