"""The model's input channels: the tile plus optional depth and row-position channels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEPTH_SCALE = 1000.0  # feet; real depths run from about 50 to 960


def make_input(image: np.ndarray, depth: float, extra_channels: Sequence[str] = ()) -> np.ndarray:
    """Stack the model's input channels ``(C, H, W)``: the tile, then each extra channel.

    ``"depth"`` is the tile's depth over 1000 ft, constant over the tile (0 when unknown);
    ``"row"`` is the row position from 0 (top) to 1 (bottom).
    """
    channels = [image]
    for name in extra_channels:
        if name == "depth":
            value = 0.0 if np.isnan(depth) else depth / DEPTH_SCALE
            channels.append(np.full_like(image, value))
        elif name == "row":
            rows = np.linspace(0.0, 1.0, image.shape[0], dtype=np.float32)
            channels.append(np.repeat(rows[:, None], image.shape[1], axis=1))
        else:
            raise ValueError(f"unknown extra channel {name!r}")
    return np.stack(channels).astype(np.float32, copy=False)
