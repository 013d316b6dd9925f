import numpy as np
import pandas as pd
import pytest
from PIL import Image

from saltseg.data.tgs import load_dataset, load_masks, read_rle_csv
from saltseg.data.tiles_io import write_mask_png
from saltseg.errors import SaltsegError
from tests.helpers import make_layout


def test_round_trip_and_sorted(tmp_path):
    ids, images, masks = make_layout(tmp_path)
    tiles = load_dataset(tmp_path, "train", cache=False)
    order = np.argsort(ids)
    assert tiles.ids == sorted(ids)
    assert tiles.images.dtype == np.float32 and tiles.masks.dtype == bool
    assert np.array_equal(tiles.images, images[order])
    assert np.array_equal(tiles.masks, masks[order])
    depths = pd.read_csv(tmp_path / "depths.csv", dtype={"id": str}).set_index("id")["z"]
    assert tiles.depths.tolist() == depths.loc[tiles.ids].tolist()
    test = load_dataset(tmp_path, "test", cache=False)
    assert len(test) == 3 and test.masks is None


def test_empty_masks_are_8bit_and_salt_16bit(tmp_path):
    write_mask_png(tmp_path / "e.png", np.zeros((101, 101), bool))
    salt = np.zeros((101, 101), bool)
    salt[3:9, 4] = True
    write_mask_png(tmp_path / "s.png", salt)
    assert np.asarray(Image.open(tmp_path / "e.png")).dtype == np.uint8
    assert set(np.unique(np.asarray(Image.open(tmp_path / "s.png")))) == {0, 65535}


def test_cache_gives_identical_tiles(tmp_path):
    make_layout(tmp_path)
    first = load_dataset(tmp_path, "train")
    second = load_dataset(tmp_path, "train")  # from the cache
    assert first.ids == second.ids
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(first.masks, second.masks)
    assert np.array_equal(first.depths, second.depths)


def test_corrupt_cache_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SALTSEG_CACHE_DIR", str(tmp_path / "cache"))
    make_layout(tmp_path / "data")
    load_dataset(tmp_path / "data", "train")
    (cache,) = (tmp_path / "cache").glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:100])
    with pytest.raises(SaltsegError, match=f"corrupt tile cache {cache}"):
        load_dataset(tmp_path / "data", "train")
    assert len(load_dataset(tmp_path / "data", "train", cache=False)) == 6


def test_real_sample_masks_match_train_csv(tgs_sample):
    tiles = load_dataset(tgs_sample, "train", cache=False)
    n_images = len(list((tgs_sample / "train" / "images").glob("*.png")))
    assert n_images > 0
    assert len(tiles) == n_images
    assert tiles.images.shape == (n_images, 101, 101)
    assert tiles.images.min() >= 0.0 and tiles.images.max() <= 1.0
    csv_ids, csv_masks = read_rle_csv(tgs_sample / "train.csv")
    assert csv_ids == tiles.ids
    assert np.array_equal(csv_masks, tiles.masks)
    empty = (~tiles.masks.reshape(n_images, -1).any(axis=1)).mean()
    assert 0.2 < empty < 0.6
    assert not np.isnan(tiles.depths).any()


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda r: __import__("shutil").rmtree(r / "train/masks"), "missing folder"),
        (lambda r: next((r / "train/masks").glob("*.png")).unlink(), "has no mask"),
        (lambda r: next((r / "train/images").glob("*.png")).unlink(), "has no image"),
        (
            lambda r: Image.new("L", (100, 101)).save(next((r / "train/images").glob("*.png"))),
            "expected 101x101",
        ),
        (lambda r: next((r / "train/masks").glob("*.png")).write_bytes(b"junk"), "unreadable"),
        (lambda r: _drop_first_row(r / "depths.csv"), "no depth"),
        (lambda r: _duplicate_first_row(r / "depths.csv"), "duplicate id"),
        (lambda r: _drop_first_row(r / "train.csv"), "no row"),
        (lambda r: _duplicate_first_row(r / "train.csv"), "duplicate id"),
    ],
)
def test_loader_errors(tmp_path, breakage, message):
    make_layout(tmp_path)
    breakage(tmp_path)
    with pytest.raises(SaltsegError, match=message):
        load_dataset(tmp_path, "train", cache=False)


def _drop_first_row(path):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "".join(lines[2:]))


def _duplicate_first_row(path):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines) + lines[1])


def test_missing_root_and_bad_split(tmp_path):
    with pytest.raises(SaltsegError, match="missing folder"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(SaltsegError, match="unknown split"):
        load_dataset(tmp_path, "valid")


def test_load_masks_sources(tmp_path):
    ids, _, masks = make_layout(tmp_path)
    from_dir = load_masks(tmp_path)
    from_csv = load_masks(tmp_path / "train.csv")
    from_pngs = load_masks(tmp_path / "train/masks")
    assert from_dir[0] == from_csv[0] == from_pngs[0] == sorted(ids)
    assert np.array_equal(from_dir[1], from_csv[1])
    assert np.array_equal(from_dir[1], from_pngs[1])


def test_malformed_rle_csv_names_the_id(tmp_path):
    (tmp_path / "sub.csv").write_text("id,rle_mask\nabc,1 2 3\n")
    with pytest.raises(SaltsegError, match="'abc'.*odd number"):
        read_rle_csv(tmp_path / "sub.csv")
    (tmp_path / "bad.csv").write_text("name,mask\nabc,1 2\n")
    with pytest.raises(SaltsegError, match="missing column"):
        read_rle_csv(tmp_path / "bad.csv")
