"""Drawing tiles for people: gray tiles as RGB, and the outline of a mask.

Every picture saltseg makes (augmentation previews, synthetic-data previews, report overlays)
draws salt with these two functions, so an outline means the same thing everywhere.
"""

from __future__ import annotations

import numpy as np


def gray_to_rgb(image: np.ndarray) -> np.ndarray:
    """A gray tile in [0, 1] as an RGB picture.

    Args:
        image: ``(H, W)`` floats; values outside [0, 1] are clipped.

    Returns:
        uint8 ``(H, W, 3)``, each channel ``round(255 * image)``.
    """
    gray = np.clip(np.rint(np.asarray(image) * 255), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def mask_outline(mask: np.ndarray, border: bool = False) -> np.ndarray:
    """The boundary pixels of a mask: salt pixels with a 4-neighbour that is not salt.

    Args:
        mask: ``(H, W)`` bool (or 0/1) mask.
        border: Whether the world beyond the image counts as "not salt", so salt touching the
            image border is outlined along it too (a full mask gets a frame). With ``False``
            only boundaries inside the image are drawn.

    Returns:
        bool ``(H, W)``, true on the outline.
    """
    mask = np.asarray(mask).astype(bool)
    padded = np.pad(mask, 1, mode="constant" if border else "edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner
