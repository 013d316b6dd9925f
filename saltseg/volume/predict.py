"""Salt probabilities of whole sections and cubes: scaling, slabs of lines, directions.

A 2D section is predicted as one line. A cube is predicted along inlines and crosslines (and, on
request, depth or time slices): each line of a direction is a section (rows = samples), scaled to
[0, 1], optionally resampled vertically, predicted by overlapping windows (see
:mod:`saltseg.volume.windows`), resampled back and added to an accumulator; the probability of a
sample is the mean over the directions. Lines are read a slab at a time (at most ``slab_mb`` of
amplitudes), so memory does not grow with the cube; slab boundaries depend only on the input and
the settings, which makes the result the same however the slabs are shared between processes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.errors import SaltsegError
from saltseg.volume.io import Volume, volume_from_array
from saltseg.volume.model import RunSpec, as_run_spec, check_runs, load_predictor
from saltseg.volume.scaling import (
    Scaling,
    apply_clip,
    clip_values,
    measure_clip,
    resample,
    resampled_length,
)
from saltseg.volume.store import Accumulator, slabs
from saltseg.volume.windows import (
    BLENDS,
    WINDOW,
    WindowPredictor,
    count_windows,
    predict_sections,
    stride_of,
)

DIRECTIONS = {"inline": 0, "crossline": 1, "depth": 2}
MIN_SLABS = 16  # cut a direction into at least this many slabs (work to share between processes)


@dataclass
class VolumeSettings:
    """How a section or cube is cut, scaled and combined.

    Attributes:
        overlap: Fraction of a window shared with its neighbour, in [0, 1).
        blend: Window weights: ``"gaussian"``, ``"pyramid"`` or ``"flat"``.
        directions: Line directions to predict and average (``inline``, ``crossline``,
            ``depth``); None: inline and crossline for a cube, the line itself for a section.
        scaling: Amplitude clipping (see :class:`~saltseg.volume.scaling.Scaling`).
        resample: Vertical resampling factor before prediction (2: twice as many samples).
        margin: Extra reflect padding around each section, in pixels.
        slab_mb: Amplitudes read at once, in MB.
        chunk: Windows per model call.
    """

    overlap: float = 0.5
    blend: str = "gaussian"
    directions: tuple[str, ...] | None = None
    scaling: Scaling = field(default_factory=Scaling)
    resample: float | None = None
    margin: int = 0
    slab_mb: float = 64.0
    chunk: int = 64

    def check(self) -> None:
        """Validate every setting that does not depend on the input.

        Raises:
            SaltsegError: the first bad setting.
        """
        stride_of(WINDOW, self.overlap)
        if self.blend not in BLENDS:
            raise SaltsegError(f"unknown blending {self.blend!r}; valid: {list(BLENDS)}")
        if self.directions is not None:
            if not self.directions:
                raise SaltsegError(f"no direction given; valid: {list(DIRECTIONS)}")
            for name in self.directions:
                if name not in DIRECTIONS:
                    raise SaltsegError(f"unknown direction {name!r}; valid: {list(DIRECTIONS)}")
            if len(set(self.directions)) != len(self.directions):
                raise SaltsegError(f"a direction is repeated in {list(self.directions)}")
        if self.resample is not None:
            resampled_length(2, self.resample)
        if self.margin < 0:
            raise SaltsegError(f"margin must be at least 0, got {self.margin}")
        if self.slab_mb <= 0 or self.chunk < 1:
            raise SaltsegError("slab size and windows per call must be positive")

    def resolve_directions(self, volume: Volume) -> tuple[str, ...]:
        """The directions for ``volume`` (a section has only its own line)."""
        if volume.is_2d:
            if self.directions not in (None, ("inline",)):
                raise SaltsegError(
                    f"a 2D section has one direction (inline), got {list(self.directions or [])}"
                )
            return ("inline",)
        return self.directions or ("inline", "crossline")

    def describe(self, directions: Sequence[str]) -> dict[str, Any]:
        """JSON-ready settings."""
        info = asdict(self)
        info.update(window=WINDOW, directions=list(directions), combine="mean")
        return info


def direction_slabs(volume: Volume, axis: int, settings: VolumeSettings) -> list[tuple[int, int]]:
    """The slabs of lines of one direction."""
    shape = volume.shape
    line_bytes = int(np.prod(shape)) // shape[axis] * 4 * max(1.0, settings.resample or 1.0)
    return slabs(shape[axis], int(line_bytes), settings.slab_mb, MIN_SLABS)


def _sections(raw: np.ndarray, axis: int) -> np.ndarray:
    """Slab in read layout -> images ``(k, rows, cols)`` with rows = samples for vertical lines."""
    return raw if axis == 2 else raw.transpose(0, 2, 1)


def _line_live(volume: Volume, axis: int, start: int, stop: int) -> np.ndarray:
    """bool ``(k, traces)`` of vertical lines, or ``(k, il, xl)`` of depth slices."""
    if axis == 0:
        return volume.live[start:stop]
    if axis == 1:
        return volume.live[:, start:stop].T
    return np.broadcast_to(volume.live, (stop - start, *volume.live.shape))


def predict_slab(
    volume: Volume,
    axis: int,
    start: int,
    stop: int,
    predict: WindowPredictor,
    settings: VolumeSettings,
    clip: tuple[float, float],
    on_windows: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Probabilities of lines ``start:stop`` along ``axis`` in the layout of :meth:`Volume.read`.

    Lines without a live trace are left zero (they are holes in every direction).
    """
    raw = volume.read(axis, start, stop)
    live = _line_live(volume, axis, start, stop)
    out = np.zeros_like(raw)
    keep = np.flatnonzero(live.reshape(len(live), -1).any(axis=1))
    if len(keep) == 0:
        return out
    images = _sections(raw[keep], axis)
    scaled = np.empty_like(images)
    for i, line in enumerate(keep):
        low, high = clip
        if settings.scaling.per_line:
            values = images[i][:, live[line]] if axis != 2 else images[i][live[line]]
            with contextlib.suppress(SaltsegError):  # a constant line keeps the global clip
                low, high = clip_values(values, settings.scaling.percentiles, "line")
        scaled[i] = apply_clip(images[i], low, high)
    rows = scaled.shape[1]
    vertical = axis != 2 and settings.resample not in (None, 1.0)
    if vertical:
        scaled = resample(scaled, resampled_length(rows, settings.resample), axis=1)
    probs = predict_sections(
        scaled,
        predict,
        WINDOW,
        settings.overlap,
        settings.blend,
        settings.margin,
        settings.chunk,
        on_windows,
    )
    if vertical:
        probs = resample(probs, rows, axis=1)
    out[keep] = probs if axis == 2 else probs.transpose(0, 2, 1)
    return out


def count_direction_windows(volume: Volume, axis: int, settings: VolumeSettings) -> int:
    """Windows needed for every line with a live trace along ``axis``."""
    shape = list(volume.shape)
    n_lines = shape.pop(axis)
    if axis != 2:
        shape = [shape[1], shape[0]]
        if settings.resample not in (None, 1.0):
            shape[0] = resampled_length(shape[0], settings.resample)
        n_lines = int(np.moveaxis(volume.live, axis, 0).any(axis=1).sum())
    return n_lines * count_windows((shape[0], shape[1]), WINDOW, settings.overlap, settings.margin)


def predict_direction(
    volume: Volume,
    acc: Accumulator,
    axis: int,
    predict: WindowPredictor,
    settings: VolumeSettings,
    clip: tuple[float, float],
    part: tuple[int, int] = (0, 1),
    on_windows: Callable[[int], None] | None = None,
) -> None:
    """Add the probabilities of the slabs ``rank, rank + size, ...`` of one direction to ``acc``.

    Args:
        part: ``(rank, size)``: which share of the slabs this process takes.
    """
    rank, size = part
    for start, stop in direction_slabs(volume, axis, settings)[rank::size]:
        probs = predict_slab(volume, axis, start, stop, predict, settings, clip, on_windows)
        acc.add(axis, start, stop, probs)


def run_local(
    volume: Volume,
    acc: Accumulator,
    predict: WindowPredictor,
    settings: VolumeSettings,
    directions: Sequence[str],
    clip: tuple[float, float],
    progress: bool,
) -> None:
    from tqdm.auto import tqdm

    total = sum(count_direction_windows(volume, DIRECTIONS[d], settings) for d in directions)
    with tqdm(total=total, unit="window", disable=not progress) as bar:
        for name in directions:
            axis = DIRECTIONS[name]
            predict_direction(volume, acc, axis, predict, settings, clip, on_windows=bar.update)


def finish(acc_values: np.ndarray, n_directions: int, live: np.ndarray) -> np.ndarray:
    """Mean over directions, NaN in holes: sums ``(k, traces, samples)`` of lines with ``live``."""
    probs = acc_values / np.float32(n_directions)
    probs[~live] = np.nan
    return probs


def predict_array(
    array: np.ndarray,
    runs: str | Path | Sequence[str | Path] | RunSpec | None = None,
    settings: VolumeSettings | None = None,
    model: WindowPredictor | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Salt probabilities of a 2D section ``(depth, traces)`` or a 3D cube ``(il, xl, samples)``.

    Args:
        array: Raw amplitudes (or an image), held in memory.
        runs: Run folder(s) whose ensemble predicts the windows (or a :class:`RunSpec`).
        settings: Windows, scaling and directions (defaults: see :class:`VolumeSettings`).
        model: Instead of ``runs``, any function from windows ``(N, 101, 101)`` in [0, 1] to
            probabilities of the same shape.
        progress: Show a progress bar.

    Returns:
        float32 probabilities of the shape of ``array``.

    Raises:
        SaltsegError: bad settings or input (NaN, constant amplitudes, a dimension under 2).
    """
    settings = settings or VolumeSettings()
    settings.check()
    if (runs is None) == (model is None):
        raise SaltsegError("give either runs or a model")
    if model is None:
        spec = as_run_spec(runs)
        check_runs(spec)
        model = load_predictor(spec)
    volume = volume_from_array(np.asarray(array))
    directions = settings.resolve_directions(volume)
    clip = measure_clip(volume, settings.scaling, settings.slab_mb)
    acc = Accumulator(volume.shape)
    run_local(volume, acc, model, settings, directions, clip, progress)
    assert acc.array is not None
    probs = finish(acc.array, len(directions), volume.live)
    return probs[0].T.copy() if np.ndim(array) == 2 else probs
