"""Tile PNGs: Kaggle layout or flat folder, 0/1 masks, atomic writes, one reader for all."""

import numpy as np
import pytest
from PIL import Image

from saltseg.data import synthetic, tgs, tiles_io
from saltseg.data.tiles_io import (
    read_image,
    read_mask,
    tile_pngs,
    write_image_png,
    write_mask_png,
    write_masks,
)
from saltseg.errors import SaltsegError
from saltseg.inference import pseudo, source


def _salt() -> np.ndarray:
    mask = np.zeros((101, 101), bool)
    mask[40:, 10:60] = True
    return mask


@pytest.mark.parametrize(
    ("dtype", "salt"), [(np.uint8, 1), (np.uint8, 255), (np.uint16, 1), (np.uint16, 65535)]
)
def test_zero_one_and_full_range_masks_read_as_salt(tmp_path, dtype, salt):
    mask = _salt()
    Image.fromarray(mask.astype(dtype) * dtype(salt)).save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), mask)


def test_mask_with_other_values_names_the_file(tmp_path):
    values = _salt().astype(np.uint8)
    values[0, 0] = 2
    Image.fromarray(values).save(tmp_path / "three.png")
    with pytest.raises(
        SaltsegError, match=r"three.png: a mask must hold 0 and one salt value.*0, 1, 2"
    ):
        read_mask(tmp_path / "three.png")
    Image.fromarray(_salt().astype(np.uint8) * 100).save(tmp_path / "dim.png")
    with pytest.raises(SaltsegError, match="dim.png: ambiguous mask value 100"):
        read_mask(tmp_path / "dim.png")


def test_empty_mask_and_load_masks_of_a_flat_folder(tmp_path):
    Image.fromarray(np.zeros((101, 101), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(_salt().astype(np.uint8)).save(tmp_path / "b.png")
    ids, masks = tgs.load_masks(tmp_path)
    assert ids == ["a", "b"] and not masks[0].any() and np.array_equal(masks[1], _salt())


def test_tile_pngs_resolves_kaggle_layout_or_flat_folder(tmp_path):
    (tmp_path / "test" / "images").mkdir(parents=True)
    write_image_png(tmp_path / "test" / "images" / "b.png", np.zeros((101, 101)))
    write_image_png(tmp_path / "test" / "images" / "a.png", np.ones((101, 101)))
    folder, paths = tile_pngs(tmp_path, "test")
    assert folder == tmp_path / "test" / "images" and [p.name for p in paths] == ["a.png", "b.png"]
    assert tile_pngs(folder)[0] == folder  # a flat folder
    with pytest.raises(SaltsegError, match="no PNG masks in .*train/masks or"):
        tile_pngs(tmp_path, "train", "masks")
    with pytest.raises(SaltsegError, match="does not exist"):
        tile_pngs(tmp_path / "nope")


def test_writers_round_trip_atomically(tmp_path):
    image = np.random.default_rng(0).random((101, 101))
    write_image_png(tmp_path / "i.png", image)
    assert np.abs(read_image(tmp_path / "i.png") - image).max() <= 0.5 / 255 + 1e-6
    gray = np.arange(101 * 101, dtype=np.int64).reshape(101, 101) % 256
    write_image_png(tmp_path / "g.png", gray.astype(np.uint8), compress_level=1)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png"))[..., 1], gray)
    write_masks(tmp_path / "masks", ["x", "y"], np.stack([_salt(), ~_salt()]))
    assert np.array_equal(read_mask(tmp_path / "masks" / "y.png"), ~_salt())
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "g.png",
        "i.png",
        "masks",
        "x.png",
        "y.png",
    ]


def test_failed_mask_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.png"
    write_mask_png(path, _salt())

    def broken_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_mask_png(path, np.zeros((101, 101), bool))
    monkeypatch.undo()
    assert np.array_equal(read_mask(path), _salt())
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]


def test_one_reader_and_writer_for_every_caller():
    assert tgs.read_image is tiles_io.read_image and tgs.read_mask is tiles_io.read_mask
    assert source.read_image is tiles_io.read_image and source.tile_pngs is tiles_io.tile_pngs
    assert pseudo.write_mask_png is synthetic.write_mask_png is tiles_io.write_mask_png
    assert not hasattr(tgs, "_read_png") and not hasattr(tgs, "write_mask_png")
