"""Side-by-side look at synthetic and real tiles: a PNG grid and a few summary statistics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from saltseg.config import AugmentConfig, load_augment_config
from saltseg.data.draw import gray_to_rgb, mask_outline
from saltseg.data.tgs import TileSet, load_dataset
from saltseg.data.transforms import demo_tiles, preview_grid
from saltseg.io import atomic_path, check_output_file

COVERAGE_BINS = ("empty", "<10%", "10-50%", "50-90%", "90-99%", "full")
_SCALE = 2
_GAP = 4


@dataclass
class TileStats:
    """Summary statistics of a labelled tile set.

    Attributes:
        n: Tiles.
        mean: Mean pixel value, in [0, 1].
        std: Standard deviation of all pixels.
        tile_std: Mean of the per-tile standard deviations (texture contrast).
        constant: Share of near-constant tiles (per-tile std below 1/255).
        coverage: Share of tiles in each of :data:`COVERAGE_BINS`.
    """

    n: int
    mean: float
    std: float
    tile_std: float
    constant: float
    coverage: dict[str, float]


def tile_stats(tiles: TileSet) -> TileStats:
    """Statistics of a labelled tile set (images in [0, 1], boolean masks)."""
    if tiles.masks is None:
        raise ValueError("tile_stats needs labelled tiles")
    images = tiles.images.reshape(len(tiles), -1).astype(np.float64)
    per_tile = images.std(axis=1)
    cover = tiles.coverage
    edges = [cover == 0, (cover > 0) & (cover < 0.1), (cover >= 0.1) & (cover < 0.5)]
    edges += [(cover >= 0.5) & (cover < 0.9), (cover >= 0.9) & (cover < 1), cover == 1]
    return TileStats(
        n=len(tiles),
        mean=float(images.mean()),
        std=float(images.std()),
        tile_std=float(per_tile.mean()),
        constant=float((per_tile < 1 / 255).mean()),
        coverage={name: float(hit.mean()) for name, hit in zip(COVERAGE_BINS, edges, strict=True)},
    )


def format_stats(stats: dict[str, TileStats]) -> str:
    """A small text table, one column per named tile set."""
    names = list(stats)
    rows = [("tiles", [f"{s.n}" for s in stats.values()])]
    for label, key in (("mean", "mean"), ("std", "std"), ("tile std", "tile_std")):
        rows.append((label, [f"{getattr(s, key):.3f}" for s in stats.values()]))
    rows.append(("constant", [f"{s.constant:.1%}" for s in stats.values()]))
    for bin_name in COVERAGE_BINS:
        rows.append((f"cov {bin_name}", [f"{s.coverage[bin_name]:.1%}" for s in stats.values()]))
    lines = [f"{'':<14}" + "".join(f"{name:>12}" for name in names)]
    lines += [f"{label:<14}" + "".join(f"{v:>12}" for v in values) for label, values in rows]
    return "\n".join(lines)


def _render_tile(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Gray tile with salt tinted red and its outline in bright red, RGB uint8."""
    rgb = gray_to_rgb(image).astype(np.float32)
    rgb[mask] = 0.75 * rgb[mask] + 0.25 * np.array([255, 0, 0])
    rgb[mask_outline(mask)] = (255, 0, 0)
    return rgb.astype(np.uint8)


def _panel(tiles: TileSet, title: str, n_tiles: int, columns: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(tiles), size=min(n_tiles, len(tiles)), replace=False)
    pick = pick[np.argsort(tiles.coverage[pick], kind="stable")]
    size = tiles.images.shape[1] * _SCALE
    rows = -(-len(pick) // columns)
    canvas = Image.new("RGB", (columns * (size + _GAP), 20 + rows * (size + _GAP)), "white")
    ImageDraw.Draw(canvas).text((4, 4), title, fill="black")
    for k, index in enumerate(pick):
        tile = Image.fromarray(_render_tile(tiles.images[index], tiles.masks[index]))
        tile = tile.resize((size, size), Image.Resampling.NEAREST)
        r, c = divmod(k, columns)
        canvas.paste(tile, (c * (size + _GAP), 20 + r * (size + _GAP)))
    return canvas


def write_preview(
    path: str | Path,
    synthetic: str | Path,
    real: str | Path | None = None,
    n_tiles: int = 48,
    columns: int = 6,
    seed: int = 0,
) -> dict[str, TileStats]:
    """Draw training tiles of a synthetic dataset, beside real ones, with salt outlined in red.

    Args:
        path: Output PNG.
        synthetic: Kaggle-layout folder of the synthetic data.
        real: Optional Kaggle-layout folder of real data (e.g. the competition sample).
        n_tiles: Tiles drawn from each dataset (sorted by salt coverage).
        columns: Tiles a row in each panel.
        seed: Which tiles are drawn.

    Returns:
        Statistics of each dataset's training tiles, keyed ``"synthetic"`` and ``"real"``.
    """
    sets = {"synthetic": load_dataset(synthetic, "train", cache=False)}
    if real is not None:
        sets["real"] = load_dataset(real, "train", cache=False)
    panels = [
        _panel(tiles, f"{name}: {Path(root)}", n_tiles, columns, seed)
        for (name, tiles), root in zip(sets.items(), [synthetic, real], strict=False)
    ]
    width = sum(p.width for p in panels) + 16 * (len(panels) - 1)
    canvas = Image.new("RGB", (width, max(p.height for p in panels)), "white")
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + 16
    canvas.save(path)
    return {name: tile_stats(tiles) for name, tiles in sets.items()}


def write_augment_preview(
    out: str | Path,
    data: str | Path | None = None,
    n: int = 8,
    augs: int = 5,
    seed: int = 0,
    config: str | Path | None = None,
    overwrite: bool = False,
) -> tuple[int, int]:
    """Draw ``n`` tiles (half with salt when the data allows) and ``augs`` augmented copies each.

    Args:
        out: The PNG to write (must not exist unless ``overwrite``).
        data: A Kaggle-layout folder (default: built-in demo tiles).
        n: Tiles, one per row.
        augs: Augmented copies per tile.
        seed: Seed of the tile choice and the augmentations.
        config: YAML with augment settings (``augment:`` section or flat).
        overwrite: Replace an existing ``out``.

    Returns:
        The number of tiles drawn and the cell size in pixels.
    """
    out = check_output_file(out, overwrite)
    cfg = load_augment_config(config) if config else AugmentConfig()
    if data is None:
        images, masks = demo_tiles(n, seed)
    else:
        tiles = load_dataset(data, "train")
        order = np.random.default_rng(seed).permutation(len(tiles))
        salt = tiles.masks.reshape(len(tiles), -1).any(axis=1)[order]
        k = min(int(salt.sum()), max((n + 1) // 2, n - int((~salt).sum())))  # half with salt
        pick = np.sort(np.concatenate([order[salt][:k], order[~salt][: n - k]]))
        images, masks = tiles.images[pick], tiles.masks[pick]
    grid = preview_grid(images, masks, cfg, n_aug=augs, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return len(images), cfg.size
