"""Augmentations keep the mask in sync with the image; the input geometry round-trips."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from saltseg.cli import app
from saltseg.config import AugmentConfig, load_augment_config
from saltseg.data.transforms import (
    apply,
    build_eval_transform,
    build_train_transform,
    demo_tiles,
    preview_grid,
    restore_geometry,
    seed_worker,
)
from saltseg.errors import SaltsegError

NO_PHOTO = {"brightness_contrast_p": 0.0, "gamma_p": 0.0}


def smooth_image(seed: int = 0) -> np.ndarray:
    """A smooth float32 101x101 field in [0, 1]: bilinear upsampling of 8x8 noise."""
    coarse = np.random.default_rng(seed).random((8, 8)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((101, 101), Image.BILINEAR), np.float32)


def agreement(image: np.ndarray, mask: np.ndarray, level: float) -> float:
    return float(((image > level) == mask.astype(bool)).mean())


@pytest.mark.parametrize(
    "overrides",
    [
        {"hflip_p": 1.0, "vflip_p": 1.0, "affine_p": 0.0},
        {"crop": "random", "crop_p": 1.0, "affine_p": 0.0, "size": 128},
        {"crop": "random", "crop_p": 1.0, "affine_p": 0.0, "size": 202},
    ],
)
def test_pixel_exact_transforms_keep_mask_in_sync(overrides: dict) -> None:
    cfg = AugmentConfig(**NO_PHOTO, **overrides)
    transform = build_train_transform(cfg, seed=1)
    for seed in range(10):
        image = smooth_image(seed)
        level = float(np.median(image))
        out_image, out_mask = apply(transform, image, image > level)
        assert out_image.shape == out_mask.shape == (cfg.size, cfg.size)
        assert agreement(out_image, out_mask, level) == 1.0


@pytest.mark.parametrize(
    "overrides",
    [
        {"affine_p": 1.0, "shift_limit": 0.2, "scale_limit": 0.2, "rotate_limit": 20.0},
        {"affine_p": 1.0, "size": 128, "geometry": "resize"},
        {"crop": "resized", "crop_p": 1.0, "crop_scale": (0.5, 0.8), "affine_p": 0.0},
        {"crop": "resized", "crop_p": 1.0, "affine_p": 1.0, "size": 202, "geometry": "resize"},
    ],
)
def test_interpolating_transforms_keep_mask_in_sync(overrides: dict) -> None:
    """Bilinear image vs nearest mask: only pixels near the boundary may disagree.

    For scale, a mask shifted by 3 pixels agrees on ~88% of this image with disagreements up to
    0.25 away from the level; a flipped one on ~54%.
    """
    transform = build_train_transform(AugmentConfig(**NO_PHOTO, **overrides), seed=2)
    changed = 0
    for seed in range(10):
        image = smooth_image(seed)
        level = float(np.median(image))
        mask = image > level
        out_image, out_mask = apply(transform, image, mask)
        assert set(np.unique(out_mask)) <= {0, 1}
        disagree = (out_image > level) != out_mask.astype(bool)
        assert disagree.mean() < 0.04
        assert np.abs(out_image - level)[disagree].max(initial=0.0) < 0.1
        changed += out_mask.shape != mask.shape or not np.array_equal(out_mask, mask)
    assert changed >= 8


def test_outputs_types_ranges_and_photometric() -> None:
    cfg = AugmentConfig(
        brightness_limit=0.5, contrast_limit=0.5, brightness_contrast_p=1.0, gamma_p=1.0
    )
    transform = build_train_transform(cfg, seed=0)
    image, mask = smooth_image(), smooth_image() > 0.5
    values = []
    for _ in range(5):
        out, out_mask = apply(transform, image, mask.astype(bool))
        assert out.dtype == np.float32 and out_mask.dtype == np.uint8
        assert out.min() >= 0.0 and out.max() <= 1.0
        values.append(out.mean())
    assert np.std(values) > 1e-3
    out, none = apply(build_eval_transform(AugmentConfig(size=128)), image)
    assert none is None and out.shape == (128, 128)
    with pytest.raises(SaltsegError, match="grayscale"):
        apply(transform, np.zeros((101, 101, 3), np.float32))
    with pytest.raises(SaltsegError, match="mask shape"):
        apply(transform, image, mask[:50])


def test_defaults_and_seed() -> None:
    cfg = AugmentConfig()
    assert cfg.vflip_p == 0 and cfg.size == 101 and cfg.geometry == "pad"
    steps = build_train_transform(cfg).transforms
    assert not any(isinstance(s, A.VerticalFlip) for s in steps)
    assert any(isinstance(s, A.HorizontalFlip) for s in steps)
    assert len(build_eval_transform(cfg).transforms) == 0
    image = smooth_image()
    first = [apply(build_train_transform(cfg, seed=5), image)[0] for _ in range(2)]
    assert np.array_equal(first[0], first[1])


class _Tiles(torch.utils.data.Dataset):
    def __init__(self, transform: A.Compose) -> None:
        self.transform = transform

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(apply(self.transform, smooth_image())[0])


@pytest.mark.parametrize("init", [None, seed_worker])
def test_workers_draw_different_augmentations_with_seed_worker(init) -> None:
    cfg = AugmentConfig(**NO_PHOTO, hflip_p=0.0, affine_p=1.0, rotate_limit=30.0)
    loader = torch.utils.data.DataLoader(
        _Tiles(build_train_transform(cfg, seed=0)), num_workers=2, worker_init_fn=init
    )
    first_of_worker0, first_of_worker1, *_ = list(loader)
    assert torch.equal(first_of_worker0, first_of_worker1) == (init is None)


def test_config_validation_and_yaml(tmp_path) -> None:
    for bad in ({"size": 64}, {"geometry": "crop"}, {"crop_scale": (0.9, 0.5)}, {"hflip_p": 2}):
        with pytest.raises(ValueError):
            AugmentConfig(**bad)
    nested = tmp_path / "run.yaml"
    nested.write_text("model: unet\naugment:\n  size: 128\n  geometry: resize\n")
    assert load_augment_config(nested) == AugmentConfig(size=128, geometry="resize")
    flat = tmp_path / "aug.yaml"
    flat.write_text("hflip_p: 0.0\ngamma_p: 0.3\n")
    assert load_augment_config(flat).gamma_p == 0.3
    flat.write_text("hflip: 0.5\n")
    with pytest.raises(SaltsegError, match="aug.yaml: hflip"):
        load_augment_config(flat)
    with pytest.raises(SaltsegError, match="cannot read"):
        load_augment_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("size", [101, 128, 202])
def test_restore_pad_is_exact(size: int) -> None:
    cfg = AugmentConfig(size=size, geometry="pad")
    images = np.stack([smooth_image(s) for s in range(3)])
    padded = np.stack([apply(build_eval_transform(cfg), im)[0] for im in images])
    back = restore_geometry(padded[:, None], "pad", size)
    assert isinstance(back, np.ndarray) and back.shape == (3, 1, 101, 101)
    assert np.array_equal(back[:, 0], images)
    back_t = restore_geometry(torch.from_numpy(padded), "pad", size)
    assert isinstance(back_t, torch.Tensor) and torch.equal(back_t, torch.from_numpy(images))


@pytest.mark.parametrize("size", [128, 202])
def test_restore_resize_is_close(size: int) -> None:
    cfg = AugmentConfig(size=size, geometry="resize")
    images = np.stack([smooth_image(s) for s in range(3)])
    resized = np.stack([apply(build_eval_transform(cfg), im)[0] for im in images])
    back = restore_geometry(resized[:, None], "resize", size)
    assert back.dtype == np.float32 and back.shape == (3, 1, 101, 101)
    error = np.abs(back[:, 0] - images)
    assert error.max() < 0.05 and error.mean() < 0.005
    back_t = restore_geometry(torch.from_numpy(resized).double(), "resize", size)
    assert back_t.dtype == torch.float64 and back_t.shape == (3, 101, 101)


def test_restore_errors() -> None:
    with pytest.raises(SaltsegError, match="expected"):
        restore_geometry(np.zeros((2, 1, 128, 128)), "pad", 202)
    with pytest.raises(SaltsegError, match="unknown geometry"):
        restore_geometry(np.zeros((2, 1, 128, 128)), "crop", 128)  # type: ignore[arg-type]


def test_preview_grid_outlines() -> None:
    images, masks = demo_tiles(4, seed=1)
    assert images.dtype == np.float32 and masks[0].any() and not masks[1].any()
    grid = preview_grid(images, masks, AugmentConfig(size=128), n_aug=3, seed=0)
    assert grid.shape == (4 * 130 + 2, 4 * 130 + 2, 3) and grid.dtype == np.uint8
    red = (grid[..., 0] == 255) & (grid[..., 1] == 0) & (grid[..., 2] == 0)
    assert red[2:130].any() and not red[132:260].any()  # salt row outlined, empty row not


def test_cli_augment_preview_demo(tmp_path) -> None:
    out = tmp_path / "p.png"
    result = CliRunner().invoke(app, ["augment-preview", "--out", str(out), "--n", "3"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (6 * 204 + 2, 3 * 204 + 2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("augment:\n  size: 50\n")
    before = out.read_bytes()
    result = CliRunner().invoke(app, ["augment-preview", "--out", str(out), "--n", "2"])
    assert result.exit_code == 2 and "already exists" in result.output
    assert out.read_bytes() == before
    args = ["augment-preview", "--out", str(out), "--config", str(bad), "--overwrite"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "error: bad augment config" in result.output
    assert out.read_bytes() == before


def test_cli_augment_preview_real(tgs_sample, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SALTSEG_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "real.png"
    args = ["augment-preview", "--data", str(tgs_sample), "--out", str(out), "--n", "4"]
    result = CliRunner().invoke(app, [*args, "--augs", "2", "--seed", "7"])
    assert result.exit_code == 0, result.output
    grid = np.asarray(Image.open(out))
    assert grid.shape == (4 * 204 + 2, 3 * 204 + 2, 3)
    assert ((grid[..., 0] == 255) & (grid[..., 1] == 0)).any()


def test_make_input_channels() -> None:
    from saltseg.data.channels import DEPTH_SCALE, make_input

    rng = np.random.default_rng(0)
    image = rng.random((8, 5), dtype=np.float32)
    x = make_input(image, 500.0, ["depth", "row"])
    assert x.shape == (3, 8, 5) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], image)
    np.testing.assert_allclose(x[1], 500.0 / DEPTH_SCALE)
    np.testing.assert_allclose(x[2][:, 3], np.linspace(0, 1, 8), rtol=1e-6)
    assert not make_input(image, float("nan"), ["depth"])[1].any()  # unknown depth is 0
    with pytest.raises(ValueError, match="unknown extra channel"):
        make_input(image, 0.0, ["colour"])
