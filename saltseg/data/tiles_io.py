"""Tile PNGs on disk: where they are, reading them as arrays, writing them back.

Tiles live either in the Kaggle layout (``DATA/<split>/images/<id>.png``,
``DATA/<split>/masks/<id>.png``) or in a flat folder of PNGs; :func:`tile_pngs` resolves both.
Images are read as float32 in [0, 1] whatever their bit depth (8-bit RGB with equal channels,
8- or 16-bit gray); masks as bool. Every PNG is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from saltseg.errors import SaltsegError
from saltseg.io import atomic_path
from saltseg.rle import TILE_SHAPE


def tile_pngs(
    data: str | Path, split: str = "test", kind: str = "images"
) -> tuple[Path, list[Path]]:
    """The PNGs of ``data/<split>/<kind>`` if that folder exists, else those of ``data``.

    Args:
        data: A Kaggle-layout data folder or a flat folder of PNG tiles.
        split: ``"train"`` or ``"test"``.
        kind: ``"images"`` or ``"masks"``.

    Returns:
        The folder the PNGs are in, and their paths sorted by name (so by tile id).

    Raises:
        SaltsegError: ``data`` is not a folder, or the resolved folder holds no PNG.
    """
    root = Path(data)
    if not root.is_dir():
        raise SaltsegError(f"data folder {root} does not exist")
    nested = root / split / kind
    folder = nested if nested.is_dir() else root
    paths = sorted(folder.glob("*.png"))
    if not paths:
        where = f"{nested} or {root}" if folder == root else str(folder)
        raise SaltsegError(f"no PNG {kind} in {where}")
    return folder, paths


def png_ids(folder: Path) -> list[str]:
    """Sorted ids (file stems) of the PNGs in ``folder``."""
    return sorted(p.stem for p in Path(folder).glob("*.png"))


def read_png(path: Path) -> np.ndarray:
    """The gray levels of a PNG, in its own integer type (uint8, or uint16/int32 for 16 bits).

    Raises:
        SaltsegError: The file is not a PNG, or an RGB one with unequal channels.
    """
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("RGB", "RGBA"):
                array = np.asarray(img)[..., :3]
                if not (array[..., 0] == array[..., 1]).all():
                    raise SaltsegError(
                        f"{path}: RGB image with unequal channels, not a seismic tile"
                    )
                array = array[..., 0]
            elif mode in ("L", "1", "P", "LA"):
                array = np.asarray(img.convert("L"))
            else:  # 16-bit and 32-bit grayscale ("I;16", "I")
                array = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise SaltsegError(f"{path}: unreadable PNG ({err})") from None
    return array


def _full_scale(array: np.ndarray) -> float:
    if array.dtype == np.bool_:
        return 1.0
    if array.dtype == np.uint8:
        return 255.0
    return 65535.0


def _check_shape(path: Path, array: np.ndarray, shape: tuple[int, int] | None, what: str) -> None:
    if shape is not None and array.shape != shape:
        raise SaltsegError(
            f"{path}: {what} is {array.shape[1]}x{array.shape[0]}, expected {shape[1]}x{shape[0]}"
        )


def read_image(path: Path, shape: tuple[int, int] | None = TILE_SHAPE) -> np.ndarray:
    """Read one tile image as float32 ``(H, W)`` in [0, 1]; ``shape=None`` accepts any size."""
    array = read_png(Path(path))
    _check_shape(path, array, shape, "tile")
    return (array / _full_scale(array)).astype(np.float32)


def read_mask(path: Path, shape: tuple[int, int] | None = TILE_SHAPE) -> np.ndarray:
    """Read one mask PNG as bool ``(H, W)``.

    A mask holds 0 for background and one salt value: the type's full range (255 or 65535, as
    Kaggle's masks), anything above half of it, or 1 (0/1 masks).

    Raises:
        SaltsegError: An unreadable PNG, another size than ``shape``, more than one nonzero
            value, or a salt value that is neither 1 nor above half the range.
    """
    array = read_png(Path(path))
    _check_shape(path, array, shape, "mask")
    salt = array.max(initial=0)
    if salt == 0:
        return np.zeros(array.shape, dtype=bool)
    if not ((array == 0) | (array == salt)).all():
        values = np.unique(array)
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise SaltsegError(
            f"{path}: a mask must hold 0 and one salt value, found {len(values)} values ({shown})"
        )
    if salt != 1 and salt <= _full_scale(array) / 2:
        raise SaltsegError(
            f"{path}: ambiguous mask value {salt}: salt must be 1 or above half the "
            f"{array.dtype} range"
        )
    return array == salt


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    """Write a mask as Kaggle did: 16-bit {0, 65535} when it has salt, 8-bit zeros when empty."""
    mask = np.asarray(mask, dtype=bool)
    if mask.any():
        picture = Image.fromarray(mask.astype(np.uint16) * 65535)
    else:
        picture = Image.fromarray(np.zeros(mask.shape, dtype=np.uint8))
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def write_image_png(path: Path, image: np.ndarray, compress_level: int = 6) -> None:
    """Write a tile as an 8-bit RGB PNG with three equal channels, atomically.

    Args:
        path: The PNG to write.
        image: ``(H, W)`` floats in [0, 1] (clipped), or uint8 gray levels written as they are.
        compress_level: zlib level, 0-9 (1 is much faster for large datasets).
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        gray = image
    else:
        gray = np.clip(np.rint(image.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    picture = Image.fromarray(np.repeat(gray[..., None], 3, axis=2))
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG", compress_level=compress_level)


def write_masks(folder: str | Path, ids: list[str], masks: np.ndarray) -> None:
    """Write ``folder/<id>.png`` for each mask with :func:`write_mask_png` (folder created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for tile_id, mask in zip(ids, masks, strict=True):
        write_mask_png(folder / f"{tile_id}.png", mask)
