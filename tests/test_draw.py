"""One outline drawing for every picture: previews, synthetic-data previews, report overlays."""

import base64
import io

import numpy as np
from PIL import Image

from saltseg.data import draw, preview, transforms
from saltseg.data.draw import gray_to_rgb, mask_outline
from saltseg.report import figures


def test_outline_inside_and_along_the_border():
    mask = np.zeros((4, 5), bool)
    mask[1:, 1:4] = True  # touches the bottom border
    inside = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0],
            [0, 1, 0, 1, 0],
            [0, 1, 0, 1, 0],
        ],
        bool,
    )
    assert np.array_equal(mask_outline(mask), inside)
    framed = inside.copy()
    framed[3, 2] = True
    assert np.array_equal(mask_outline(mask.astype(np.uint8), border=True), framed)
    full = np.ones((3, 3), bool)
    assert not mask_outline(full).any()
    assert mask_outline(full, border=True).sum() == 8
    assert not mask_outline(np.zeros((3, 3), bool), border=True).any()


def test_gray_to_rgb_rounds_and_clips():
    rgb = gray_to_rgb(np.array([[-0.5, 0.5, 1.5]]))
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0, :, 0].tolist() == [0, 128, 255] and (rgb[..., 0] == rgb[..., 2]).all()


def test_no_private_outline_copies_left():
    for module in (figures, transforms, preview):
        assert not hasattr(module, "_outline")
        assert module.mask_outline is draw.mask_outline


def _salt() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((12, 12), 0.5, np.float32)
    mask = np.zeros((12, 12), bool)
    mask[4:, 2:9] = True
    return image, mask


def test_augmentation_preview_and_synthetic_preview_draw_that_outline():
    image, mask = _salt()
    red = np.all(transforms._cell(image, mask, scale=1) == (255, 0, 0), axis=2)
    assert np.array_equal(red, mask_outline(mask))
    red = np.all(preview._render_tile(image, mask) == (255, 0, 0), axis=2)
    assert np.array_equal(red, mask_outline(mask))


def test_report_overlay_draws_that_outline_with_the_border():
    image, truth = _salt()
    png = base64.b64decode(figures.overlay_png(image, truth, np.zeros_like(truth)))
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    green = np.all(rgb == figures.TRUTH_RGB, axis=2)[:: figures.SCALE, :: figures.SCALE]
    assert np.array_equal(green, mask_outline(truth, border=True))
