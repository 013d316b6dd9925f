"""``predict-volume``: a SEG-Y, ``.npy`` or image file in, probabilities and masks out.

Everything that can be checked is checked before the first write: the settings, the runs, the
input (readable, finite, not constant), the output folder (earlier outputs only with
``overwrite``; other files may stay unless they take an output's name) and the free disk space.
The sums of the directions are then accumulated in a scratch file in the hidden staging folder
inside the output folder, the outputs are written there, and moved into place at the end (see
:class:`saltseg.outputs.OutputFolder`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.errors import SaltsegError
from saltseg.outputs import OutputFolder, check_disk
from saltseg.volume.io import Volume, open_volume
from saltseg.volume.model import RunSpec, as_run_spec, check_runs, load_predictor
from saltseg.volume.predict import VolumeSettings, finish, run_local
from saltseg.volume.scaling import apply_clip, measure_clip
from saltseg.volume.segy import write_segy
from saltseg.volume.store import Accumulator, slabs
from saltseg.volume.windows import WindowPredictor
from saltseg.volume.writers import FORMATS, OUTPUTS, SUMMARY, resolve_formats, write_npy, write_pngs


def _needed_bytes(volume: Volume, formats: Sequence[str]) -> int:
    """Disk space of the scratch sums and the outputs."""
    cells = int(np.prod(volume.shape))
    needed = 4 * cells  # the sums
    if "npy" in formats:
        needed += 5 * cells + 256
    if "segy" in formats:
        n_traces, n_samples = int(volume.live.sum()), volume.shape[2]
        needed += 2 * (3600 + 3200 * 8 + n_traces * (240 + 4 * n_samples))
    if "png" in formats:
        needed += 2 * 3 * cells + 4096
    return needed


def _check_source(source: Path | None, out: Path) -> None:
    """Refuse an input in ``out`` under the name of an output (it would be replaced)."""
    ours = {name for f in FORMATS for name in OUTPUTS[f]} | {SUMMARY}
    if source is not None and source.name in ours and source.resolve().parent == out.resolve():
        raise SaltsegError(f"the input {source} would be replaced by an output")


def _write_outputs(
    staging: Path,
    volume: Volume,
    acc: Accumulator,
    n_directions: int,
    formats: Sequence[str],
    threshold: float,
    clip: tuple[float, float],
    slab_mb: float,
) -> None:
    n_lines, n_traces, n_samples = volume.shape

    def probs_of(start: int, stop: int) -> np.ndarray:
        return finish(acc.read(start, stop), n_directions, volume.live[start:stop])

    if "npy" in formats:
        paths = [staging / name for name in OUTPUTS["npy"]]
        if volume.is_2d:
            image = probs_of(0, 1)[0].T
            write_npy(*paths, image.shape, [(0, n_samples)], lambda a, b: image[a:b], threshold)
        else:
            parts = slabs(n_lines, n_traces * n_samples * 4, slab_mb, 1)
            write_npy(*paths, volume.shape, parts, probs_of, threshold)
    if "segy" in formats:
        assert volume.segy is not None and volume.path is not None
        prob_path, mask_path = (staging / name for name in OUTPUTS["segy"])

        def traces(cells: np.ndarray) -> np.ndarray:
            return acc.read_cells(cells) / np.float32(n_directions)

        write_segy(volume.path, volume.segy, prob_path, traces)
        write_segy(
            volume.path,
            volume.segy,
            mask_path,
            lambda cells: (traces(cells) > threshold).astype(np.float32),
        )
    if "png" in formats:
        image = apply_clip(volume.read(0, 0, 1)[0].T, *clip)
        write_pngs(*(staging / n for n in OUTPUTS["png"]), image, probs_of(0, 1)[0].T, threshold)


def predict_file(
    source: str | Path,
    runs: str | Path | Sequence[str | Path] | RunSpec,
    out: str | Path,
    settings: VolumeSettings | None = None,
    formats: str | None = None,
    iline_byte: int = 189,
    xline_byte: int = 193,
    overwrite: bool = False,
    devices: int = 1,
    progress: bool = True,
    model: WindowPredictor | None = None,
) -> dict[str, Any]:
    """Predict a section or cube file with the ensemble of ``runs`` and write ``out/``.

    Args:
        source: A SEG-Y (``.sgy``/``.segy``), ``.npy``, PNG or TIFF file.
        runs: Run folder(s), or a :class:`~saltseg.volume.model.RunSpec` (weights, TTA, ...).
        out: Output folder.
        settings: Windows, scaling, directions.
        formats: Comma-separated ``npy``, ``segy``, ``png`` (default: all that apply).
        iline_byte: SEG-Y trace header byte of the inline number.
        xline_byte: SEG-Y trace header byte of the crossline number.
        overwrite: Replace earlier outputs of ``predict-volume`` in ``out``.
        devices: CPU processes to share the lines between.
        progress: Show a progress bar.
        model: Predict the windows with this function instead of the ensemble of ``runs``
            (which still give the threshold); one process only.

    Returns:
        The summary also written to ``out/predict-volume.json``.

    Raises:
        SaltsegError: bad settings, runs, input or output folder, or too little disk space.
    """
    started = time.perf_counter()
    settings = settings or VolumeSettings()
    settings.check()
    if devices < 1:
        raise SaltsegError(f"--devices must be at least 1, got {devices}")
    if model is not None and devices > 1:
        raise SaltsegError("a model function runs in one process only (devices=1)")
    spec = as_run_spec(runs)
    threshold, origin = check_runs(spec)
    volume = open_volume(source, iline_byte, xline_byte)
    directions = settings.resolve_directions(volume)
    formats_ = resolve_formats(formats, volume.segy is not None, volume.is_2d)
    names = [name for f in formats_ for name in OUTPUTS[f]]
    _check_source(volume.path, Path(out))
    folder = OutputFolder(out, SUMMARY, overwrite, names=names)
    check_disk(Path(out), _needed_bytes(volume, formats_))
    clip = measure_clip(volume, settings.scaling, settings.slab_mb)
    staging = folder.stage()
    try:
        scratch = staging / ".scratch"  # the sums (and any files of the processes)
        scratch.mkdir()
        acc = Accumulator(volume.shape, scratch / "sums.f32").create()
        if devices > 1:
            from saltseg.volume.distributed import predict_sharded

            predict_sharded(volume, acc, spec, settings, directions, clip, devices, progress)
        else:
            predict = model or load_predictor(spec)
            run_local(volume, acc, predict, settings, directions, clip, progress)
        _write_outputs(
            staging, volume, acc, len(directions), formats_, threshold, clip, settings.slab_mb
        )
        shutil.rmtree(scratch)
        summary: dict[str, Any] = {
            "input": volume.describe(),
            "runs": spec.runs,
            "members": spec.members,
            "backend": spec.backend,
            "tta": list(spec.tta),
            "threshold": threshold,
            "threshold_from": origin,
            "clip": list(clip) if not settings.scaling.per_line else "per line",
            "global_clip": list(clip),
            "settings": settings.describe(directions),
            "devices": devices,
            "seconds": round(time.perf_counter() - started, 2),
        }
        folder.publish(summary)
    except BaseException:
        folder.abort()
        raise
    return {**summary, "outputs": sorted(names)}
