"""Synthetic seismic sections with salt bodies, cut into tiles in the Kaggle TGS layout.

A section is built from a "relative geologic time" field ``t(z, x)``: flat layers bent by folds,
dragged up along salt flanks and offset by faults. The layered image is a 1-D reflectivity series
convolved with a Ricker wavelet, read at ``t``. Salt bodies (domes rising from below, sheets,
blobs; each a smooth random closed curve with a rough edge) replace the layers by weak chaotic
reflections and add a strong reflection at their top and base. Some sections have a blank wedge
at one end, like the zero-filled edges of real sections.

:func:`generate_dataset` cuts sections into adjacent 101x101 tiles on a grid, keeps about 85% of
the grid positions (all-salt positions less often, positions that salt barely touches more often,
which brings the coverage histogram close to the real one; the rest are holes, as in the real
mosaic), assigns the kept ones at random to train or test and writes the competition layout plus
``mosaic_truth.csv`` (``id,section,row,col``) and a marker file, :data:`MARKER`, without which
``overwrite=True`` refuses to delete a dataset.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saltseg.data.tiles_io import write_image_png, write_mask_png
from saltseg.errors import SaltsegError
from saltseg.io import write_json
from saltseg.rle import TILE, rle_encode

DATASET_ENTRIES = ("train", "test", "train.csv", "depths.csv", "mosaic_truth.csv")
MARKER = ".saltseg-synthetic.json"  # written first: the dataset in this folder is ours to replace
_FILL = 0.85  # share of grid positions that become tiles
_MAX_SECTION_TILES = 300
# How often a grid position is kept, by salt coverage: all-salt tiles are rare in the real set
# and tiles that salt barely touches common.
_KEEP_FULL, _KEEP_SLIVER = 0.1, 3.0


@dataclass
class SynthSummary:
    """What :func:`generate_dataset` wrote."""

    out: Path
    n_train: int
    n_test: int
    n_sections: int
    empty_fraction: float
    seconds: float


def _fast_len(n: int) -> int:
    """The smallest 5-smooth integer >= ``n`` (a fast FFT length)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _upsample(coarse: np.ndarray, h: int, w: int, step: int) -> np.ndarray:
    """Bilinear upsampling of a coarse grid (one node every ``step`` pixels) to ``(h, w)``."""
    if step == 1:
        return coarse[:h, :w]
    zi, xi = np.arange(h) / step, np.arange(w) / step
    z0, x0 = zi.astype(np.int64), xi.astype(np.int64)
    fz, fx = (zi - z0).astype(np.float32)[:, None], (xi - x0).astype(np.float32)
    rows = coarse[:, x0] * (1 - fx) + coarse[:, x0 + 1] * fx
    return rows[z0] * (1 - fz) + rows[z0 + 1] * fz


def _gaussian(grid: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian blur of a 2-D grid through the FFT (DC gain 1), float32."""
    fz, fx = np.fft.fftfreq(grid.shape[0])[:, None], np.fft.rfftfreq(grid.shape[1])[None, :]
    gain = np.exp(-2 * np.pi**2 * sigma**2 * (fz**2 + fx**2)).astype(np.float32)
    return np.fft.irfft2(np.fft.rfft2(grid.astype(np.float32)) * gain, s=grid.shape)


def _smooth_field(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Gaussian random field of unit std and correlation length about ``scale`` pixels."""
    step = int(np.clip(scale / 3, 1, 24))
    sigma, hc, wc = scale / step, h // step + 2, w // step + 2
    pad = int(2 * sigma) + 1
    noise = rng.standard_normal((_fast_len(hc + 2 * pad), _fast_len(wc + 2 * pad)), np.float32)
    coarse = _gaussian(noise, sigma)[pad : pad + hc, pad : pad + wc]
    return _upsample(coarse * np.float32(2 * np.sqrt(np.pi) * sigma), h, w, step)


def _smooth_series(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """1-D Gaussian random series of unit std and correlation length about ``scale`` samples."""
    pad = int(3 * scale)
    size = _fast_len(n + 2 * pad)
    gain = np.exp(-2 * np.pi**2 * scale**2 * np.fft.rfftfreq(size) ** 2)
    series = np.fft.irfft(np.fft.rfft(rng.standard_normal(size)) * gain, n=size)[pad : pad + n]
    return series * np.sqrt(2 * np.sqrt(np.pi) * scale)


def _blur_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    """A boolean mask blurred over about ``scale`` pixels, float32 in [0, 1]."""
    step = int(np.clip(scale / 3, 1, 24))
    h, w = mask.shape
    hc, wc = h // step + 2, w // step + 2
    padded = np.zeros((hc * step, wc * step), dtype=np.float32)
    padded[:h, :w] = mask
    padded[h:, :w] = mask[-1:]  # salt continues below the section
    pad = int(2 * scale / step) + 1
    coarse = np.pad(padded.reshape(hc, step, wc, step).mean(axis=(1, 3)), pad, mode="edge")
    blurred = _gaussian(coarse, scale / step)[pad : pad + hc, pad : pad + wc]
    return _upsample(np.clip(blurred, 0, 1), h, w, step)


def _ricker(wavelength: float, half: int) -> np.ndarray:
    """Ricker wavelet of peak wavelength ``wavelength`` samples, ``2 * half + 1`` samples long."""
    tau = np.arange(-half, half + 1) / wavelength
    return (1 - 2 * np.pi**2 * tau**2) * np.exp(-(np.pi**2) * tau**2)


def _convolve_z(refl: np.ndarray, wavelength: float) -> np.ndarray:
    """Convolve every column with a Ricker wavelet of peak 1 (zero-padded, no wrap-around)."""
    h = refl.shape[0]
    half = int(np.ceil(2 * wavelength))
    kernel = _ricker(wavelength, half)
    n = _fast_len(h + 2 * half)
    column = np.zeros(n)
    column[: half + 1], column[-half:] = kernel[half:], kernel[:half]
    spectrum = np.fft.rfft(refl, n=n, axis=0) * np.fft.rfft(column).astype(np.complex64)[:, None]
    return np.fft.irfft(spectrum, n=n, axis=0)[:h]


def _trace(rng: np.random.Generator, t0: float, t1: float, wavelength: float) -> np.ndarray:
    """Layered trace on ``[t0, t1]``, 4 samples a pixel: blocky impedance, Ricker-convolved."""
    n = int(np.ceil((t1 - t0) * 4)) + 1
    mean_bed = wavelength * rng.uniform(0.2, 0.8)
    tops = np.cumsum(rng.exponential(mean_bed, size=int((t1 - t0) / mean_bed * 2) + 20))
    index = (tops[tops < t1 - t0] * 4).astype(np.int64)
    envelope = np.exp(rng.uniform(0.3, 1.0) * _smooth_series(rng, n, 80 * wavelength))
    spikes = np.zeros(n)
    values = rng.standard_normal(len(index)) * envelope[index]
    values[rng.random(len(index)) < 0.04] *= 3
    np.add.at(spikes, index, values)
    trace = np.convolve(spikes, _ricker(4 * wavelength, int(8 * wavelength)), mode="same")
    return (trace / (trace.std() + 1e-12)).astype(np.float32)


def _box_x(noise: np.ndarray, length: int) -> np.ndarray:
    """Moving average over ``length`` columns (output ``length - 1`` columns narrower)."""
    total = np.cumsum(noise, axis=1, dtype=np.float32)
    total = np.concatenate([np.zeros_like(total[:, :1]), total], axis=1)
    return (total[:, length:] - total[:, :-length]) / length


def _salt_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Union of domes, sheets and blobs, each a smooth random closed curve with a rough edge."""
    salt = np.zeros((h, w), dtype=bool)
    rough = _smooth_field(rng, h, w, rng.uniform(10, 40)) * rng.uniform(0.02, 0.08)
    rough += _smooth_field(rng, h, w, rng.uniform(50, 150)) * rng.uniform(0.04, 0.15)
    harmonic = np.arange(2, 13)[:, None]
    angles = np.linspace(-np.pi, np.pi, 1025)
    for _ in range(1 + rng.poisson(w / 110)):
        kind = rng.choice(3, p=[0.4, 0.25, 0.35])
        if kind == 0:  # diapir rising from below the section
            rz = h * rng.uniform(0.3, 0.7)
            rx, cz = rz * rng.uniform(0.12, 0.4), h * rng.uniform(0.15, 0.85) + rz
        elif kind == 1:  # sheet
            rz = h * rng.uniform(0.04, 0.12)
            rx, cz = rz * rng.uniform(3, 8), h * rng.uniform(0.2, 0.8)
        else:  # blob
            rz = h * rng.uniform(0.06, 0.2)
            rx, cz = rz * rng.uniform(0.5, 2), h * rng.uniform(0.2, 0.9)
        cx = rng.uniform(-0.1, 1.1) * w
        amp = rng.normal(0, 0.2 / harmonic)
        phase = rng.uniform(0, 2 * np.pi, harmonic.shape)
        z0, z1 = max(0, int(cz - 1.6 * rz)), min(h, int(cz + 1.6 * rz) + 1)
        x0, x1 = max(0, int(cx - 1.6 * rx)), min(w, int(cx + 1.6 * rx) + 1)
        if z0 >= z1 or x0 >= x1:
            continue
        dz = ((np.arange(z0, z1, dtype=np.float32) - cz) / rz)[:, None]
        dx = (np.arange(x0, x1, dtype=np.float32) - cx) / rx
        outline = 1 + (amp * np.cos(harmonic * angles + phase)).sum(axis=0, dtype=np.float32)
        radius = outline[((np.arctan2(dz, dx) + np.pi) * (512 / np.pi)).astype(np.int64)]
        salt[z0:z1, x0:x1] |= np.hypot(dz, dx) + rough[z0:z1, x0:x1] < radius
    return salt


def _blank_wedge(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A zero-filled wedge at one end of some sections, like the padded edges of real ones."""
    if rng.random() >= 0.6:
        return np.zeros((h, w), dtype=bool)
    edge = rng.uniform(0.5, 3) * TILE + rng.uniform(-1.5, 1.5) * TILE * (np.arange(h) / h - 0.5)
    blank = np.arange(w)[None, :] < edge[:, None]
    return blank[:, ::-1] if rng.random() < 0.5 else blank


def _time_field(rng: np.random.Generator, salt: np.ndarray, wavelength: float) -> np.ndarray:
    """Relative geologic time: folded, salt-dragged and faulted; reflectors are its level lines."""
    h, w = salt.shape
    z = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    depth = z / h
    bend = _smooth_series(rng, w, rng.uniform(150, 600))
    dip = rng.uniform(-0.3, 0.3) + bend * rng.uniform(0, 0.6)
    tilt = np.cumsum(dip, dtype=np.float32)[None, :] * (rng.uniform(0.3, 1.0) + depth)
    t = z * (1 - rng.uniform(0, 0.2) * depth) + tilt
    t = t + _smooth_field(rng, h, w, rng.uniform(300, 900)) * rng.uniform(10, 120) * (0.3 + depth)
    t += _smooth_field(rng, h, w, rng.uniform(60, 200)) * rng.uniform(2, 25)
    t += _smooth_field(rng, h, w, rng.uniform(6, 30)) * rng.uniform(0.03, 0.25) * wavelength
    if salt.any():
        t += _blur_mask(salt, rng.uniform(30, 120)) * rng.uniform(-20, 120)
    for _ in range(rng.poisson(w / 900)):
        line = rng.uniform(0, w) + (z - rng.uniform(0, h)) / np.tan(rng.uniform(0.9, 1.45))
        taper = np.exp(-(((z - rng.uniform(0, h)) / (h * rng.uniform(0.3, 1.0))) ** 2))
        t += rng.uniform(3, 15) * taper * np.clip(rng.choice([-1, 1]) * (x - line), -0.5, 0.5)
    return t


def make_section(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic seismic section with salt.

    Args:
        rng: Source of randomness; the same state gives the same section.
        height: Rows (depth), pixels.
        width: Columns, pixels.

    Returns:
        ``image`` float32 ``(height, width)`` in [0, 1] (exactly 0 in blank areas) and ``salt``
        bool ``(height, width)``.
    """
    if height < 8 or width < 8:
        raise SaltsegError(f"section must be at least 8x8 pixels, got {height}x{width}")
    h, w = height, width
    blank = _blank_wedge(rng, h, w)
    salt = _salt_mask(rng, h, w) & ~blank
    wavelength = float(np.exp(rng.uniform(np.log(4), np.log(30))))
    t = _time_field(rng, salt, wavelength)
    t0 = float(t.min()) - 1
    frac, whole = np.modf((t - t0) * 4)
    index = whole.astype(np.int32)
    traces = []
    for _ in range(2):
        trace = _trace(rng, t0, float(t.max()) + 1, wavelength)
        traces.append(trace[index] + frac * np.diff(trace, append=trace[-1])[index])
    mix = 1 / (1 + np.exp(-2 * _smooth_field(rng, h, w, rng.uniform(100, 400))))
    layers = (traces[0] - traces[1]) * mix + traces[1]
    layers *= np.exp(rng.uniform(0.2, 0.6) * _smooth_field(rng, h, w, rng.uniform(20, 80)))
    chaotic = np.zeros((h, w), dtype=np.float32)
    if rng.random() < 0.5:  # mass-transport deposits: chaotic sediments, not salt
        field = _smooth_field(rng, h, w, rng.uniform(100, 300))
        chaotic = 1 / (1 + np.exp(-4 * (field - rng.uniform(1.2, 2.2))))
        layers *= 1 - chaotic

    norm = float(1 / np.sqrt((_ricker(wavelength, int(np.ceil(2 * wavelength))) ** 2).sum()))
    saltf = salt.astype(np.float32)
    length = max(1, int(wavelength * rng.uniform(0.3, 1.5)))
    chaos = _box_x(_box_x(rng.standard_normal((h, w + 2 * length - 2), np.float32), length), length)
    chaos *= norm / (chaos.std() + 1e-12)
    refl = (saltf * rng.uniform(0.1, 0.4) + chaotic * rng.uniform(0.5, 1.0)) * chaos
    grain = max(2, int(wavelength * rng.uniform(0.3, 0.8)))
    noise = _box_x(rng.standard_normal((h, w + grain - 1), np.float32), grain)
    refl += rng.uniform(0.03, 0.2) * norm * grain**0.5 * noise * (1 - 0.7 * saltf)
    refl[1:] += rng.uniform(0.8, 2.5) * (salt[1:].view(np.int8) - salt[:-1].view(np.int8))
    image = _convolve_z(refl, wavelength)
    inside = rng.uniform(0.05, 0.3) * _smooth_field(rng, h, w, wavelength * rng.uniform(1, 3))
    image += np.where(salt, inside, layers)
    image *= np.exp(rng.uniform(0.1, 0.4) * _smooth_field(rng, h, w, rng.uniform(150, 500)))

    image *= rng.uniform(0.08, 0.17) / (image[~blank].std() + 1e-12 if (~blank).any() else 1.0)
    image += rng.uniform(0.01, 0.06) * _smooth_field(rng, h, w, rng.uniform(200, 600)) + 0.5
    image += saltf * rng.uniform(-0.03, 0.08)
    np.clip(image, 0, 1, out=image)
    image[blank] = 0
    return image, salt


def _plan(rng: np.random.Generator, n_tiles: int) -> list[tuple[int, int]]:
    """Grid shapes ``(rows, cols)`` of the sections, with at least ``n_tiles`` positions in all."""
    positions = int(np.ceil(n_tiles / _FILL))
    per_section = float(np.clip(4 * np.sqrt(positions), 60, _MAX_SECTION_TILES))
    n_sections = int(np.ceil(positions / per_section))
    shapes = []
    for _ in range(n_sections):
        rows = int(rng.integers(5, 10))
        shapes.append((rows, max(2, round(positions / n_sections / rows))))
    while sum(r * c for r, c in shapes) < n_tiles:
        rows, cols = shapes[-1]
        shapes[-1] = (rows, cols + 1)
    return shapes


def _tile_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct random 10-character lowercase hex ids."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        for value in rng.integers(0, 16**10, size=n - len(ids), dtype=np.int64):
            tile_id = f"{int(value):010x}"
            if tile_id not in seen:
                seen.add(tile_id)
                ids.append(tile_id)
    return ids


def dataset_entries(out: str | Path) -> list[str]:
    """The dataset files and folders (of :data:`DATASET_ENTRIES`) already in ``out``."""
    return [name for name in DATASET_ENTRIES if (Path(out) / name).exists()]


def is_synthetic(out: str | Path) -> bool:
    """Whether ``out`` holds a dataset written by :func:`generate_dataset` (its marker file)."""
    return (Path(out) / MARKER).is_file()


def _prepare(out: Path, overwrite: bool, marker: dict[str, object]) -> None:
    """Clear a previous synthetic dataset from ``out`` and make the split folders.

    Only the :data:`DATASET_ENTRIES` of a folder carrying :data:`MARKER` are ever deleted; a
    dataset saltseg did not generate (the real Kaggle data, say) is refused even with overwrite.
    """
    present = dataset_entries(out)
    if present and not overwrite:
        raise SaltsegError(
            f"{out} already holds a dataset ({', '.join(present)}); "
            "use --overwrite (overwrite=True) to replace it"
        )
    if present and not is_synthetic(out):
        raise SaltsegError(
            f"{out} holds a dataset ({', '.join(present)}) that saltseg did not generate (no "
            f"{MARKER}); refusing to delete it: choose another folder or remove it yourself"
        )
    for name in present:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_json(marker, out / MARKER)
    for split in ("train/images", "train/masks", "test/images"):
        (out / split).mkdir(parents=True)


def _write_csv(path: Path, header: str, rows: dict[str, str]) -> None:
    lines = [header] + [f"{key},{rows[key]}" for key in sorted(rows)]
    path.write_text("\n".join(lines) + "\n")


def generate_dataset(
    out: str | Path, n_train: int = 400, n_test: int = 200, seed: int = 0, overwrite: bool = False
) -> SynthSummary:
    """Write a synthetic dataset in the Kaggle TGS layout, plus ``mosaic_truth.csv``.

    Args:
        out: Folder to write (created if needed).
        n_train: Labelled tiles (``train/images``, ``train/masks``, ``train.csv``).
        n_test: Unlabelled tiles (``test/images``).
        seed: The same seed and sizes give byte-identical files.
        overwrite: Replace a synthetic dataset already in ``out`` (one with the :data:`MARKER`
            file this function writes); otherwise that is an error.

    Raises:
        SaltsegError: negative sizes, no tiles at all, ``out`` already holds a dataset and
            ``overwrite`` is false, or it holds one that saltseg did not generate.
    """
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise SaltsegError(f"need n_train, n_test >= 0 and some tiles, got {n_train}, {n_test}")
    start = time.perf_counter()
    out = Path(out)
    made = {
        "generator": "saltseg.data.synthetic",
        "seed": seed,
        "n_train": n_train,
        "n_test": n_test,
    }
    _prepare(out, overwrite, made)
    rng = np.random.default_rng([seed, 0])
    shapes = _plan(rng, n_train + n_test)
    owner = np.repeat(np.arange(len(shapes)), [r * c for r, c in shapes])
    chosen = owner[rng.permutation(len(owner))[: n_train + n_test]]
    ids = iter(_tile_ids(rng, len(chosen)))
    depths, rles, truth = {}, {}, {}
    for s, (rows, cols) in enumerate(shapes):
        section_rng = np.random.default_rng([seed, 1, s])
        image, salt = make_section(section_rng, rows * TILE, cols * TILE)
        gray = np.rint(image * 255).astype(np.uint8)
        feet = section_rng.uniform(0.75, 0.95) * 1000 / (rows * TILE)
        top = section_rng.uniform(0, 1000 - feet * rows * TILE)
        cover = salt.reshape(rows, TILE, cols, TILE).mean(axis=(1, 3)).ravel()
        weight = np.where(
            cover == 1, _KEEP_FULL, np.where((cover > 0) & (cover < 0.1), _KEEP_SLIVER, 1.0)
        )
        count = int((chosen == s).sum())
        picked = section_rng.choice(rows * cols, size=count, replace=False, p=weight / weight.sum())
        picked = section_rng.permutation(
            picked
        )  # weighted draws come heavy-first; unbias the split
        n_train_here = int((chosen[:n_train] == s).sum())
        for k, position in enumerate(picked):
            tile_id, (r, c) = next(ids), divmod(int(position), cols)
            window = np.s_[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE]
            split = "train" if k < n_train_here else "test"
            write_image_png(out / split / "images" / f"{tile_id}.png", gray[window], 1)
            if split == "train":
                write_mask_png(out / "train" / "masks" / f"{tile_id}.png", salt[window])
                rles[tile_id] = rle_encode(salt[window])
            depths[tile_id] = str(round(top + (r + 0.5) * TILE * feet))
            truth[tile_id] = f"{s},{r},{c}"
    _write_csv(out / "train.csv", "id,rle_mask", rles)
    _write_csv(out / "depths.csv", "id,z", depths)
    _write_csv(out / "mosaic_truth.csv", "id,section,row,col", truth)
    empty = sum(1 for rle in rles.values() if not rle) / max(1, len(rles))
    return SynthSummary(out, n_train, n_test, len(shapes), empty, time.perf_counter() - start)
