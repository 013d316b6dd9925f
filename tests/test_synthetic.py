import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from saltseg.cli import app
from saltseg.data.preview import COVERAGE_BINS, format_stats, write_preview
from saltseg.data.synthetic import MARKER, TILE, generate_dataset, is_synthetic, make_section
from saltseg.data.tgs import load_dataset
from saltseg.errors import SaltsegError
from saltseg.rle import rle_decode

runner = CliRunner()


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """The default-size dataset (400 train + 200 test tiles), generated once."""
    out = tmp_path_factory.mktemp("synth")
    summary = generate_dataset(out, n_train=400, n_test=200, seed=0)
    assert (summary.n_train, summary.n_test) == (400, 200)
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _stems(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.png")}


def _gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))[..., 0].astype(np.float64)


def test_layout_and_png_modes(synth):
    train, masks, test = (
        _stems(synth / "train/images"),
        _stems(synth / "train/masks"),
        _stems(synth / "test/images"),
    )
    assert len(train) == 400 and len(test) == 200 and masks == train
    assert not train & test
    assert all(re.fullmatch(r"[0-9a-f]{10}", i) for i in train | test)
    for tile_id in sorted(train)[:100] + sorted(test)[:50]:
        split = "train" if tile_id in train else "test"
        image = Image.open(synth / split / "images" / f"{tile_id}.png")
        assert image.mode == "RGB" and image.size == (TILE, TILE)
        array = np.asarray(image)
        assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()
    modes = set()
    for tile_id in sorted(train):
        mask = Image.open(synth / "train/masks" / f"{tile_id}.png")
        values = set(np.unique(np.asarray(mask)).tolist())
        modes.add(mask.mode)
        if mask.mode == "I;16":
            assert 65535 in values and values <= {0, 65535}
        else:
            assert mask.mode == "L" and values == {0}
    assert modes == {"I;16", "L"}


def test_train_csv_decodes_to_the_mask_pngs(synth):
    rows = _rows(synth / "train.csv")
    assert {r["id"] for r in rows} == _stems(synth / "train/images")
    for row in rows:
        png = np.asarray(Image.open(synth / "train/masks" / f"{row['id']}.png")) > 0
        np.testing.assert_array_equal(rle_decode(row["rle_mask"], (TILE, TILE)), png)
    assert any(r["rle_mask"] == "" for r in rows)


def test_depths_and_truth_cover_every_id(synth):
    ids = _stems(synth / "train/images") | _stems(synth / "test/images")
    depths = {r["id"]: int(r["z"]) for r in _rows(synth / "depths.csv")}
    truth = _rows(synth / "mosaic_truth.csv")
    assert set(depths) == ids and {r["id"] for r in truth} == ids
    assert all(0 < z < 1000 for z in depths.values())
    cells = {(r["section"], r["row"], r["col"]) for r in truth}
    assert len(cells) == len(truth)
    by_section: dict[str, dict[int, int]] = {}
    for r in truth:
        rows = by_section.setdefault(r["section"], {})
        rows.setdefault(int(r["row"]), depths[r["id"]])
        assert rows[int(r["row"])] == depths[r["id"]]  # one depth per row of a section
    for rows in by_section.values():
        ordered = [rows[k] for k in sorted(rows)]
        assert ordered == sorted(ordered) and len(set(ordered)) == len(ordered)


def test_neighbours_in_truth_continue_each_other(synth):
    tiles = {}
    for r in _rows(synth / "mosaic_truth.csv"):
        split = "train" if (synth / "train/images" / f"{r['id']}.png").exists() else "test"
        key = (int(r["section"]), int(r["row"]), int(r["col"]))
        tiles[key] = _gray(synth / split / "images" / f"{r['id']}.png")
    right = [(a, (a[0], a[1], a[2] + 1)) for a in tiles if (a[0], a[1], a[2] + 1) in tiles]
    below = [(a, (a[0], a[1] + 1, a[2])) for a in tiles if (a[0], a[1] + 1, a[2]) in tiles]
    assert len(right) > 100 and len(below) > 100
    keys = list(tiles)
    shuffled = np.random.default_rng(0).integers(0, len(keys), (len(right), 2))

    def gap(pairs, first, second):
        return np.mean([np.abs(first(tiles[a]) - second(tiles[b])).mean() for a, b in pairs])

    pairs = [(keys[i], keys[j]) for i, j in shuffled]
    last_col, first_col = (lambda t: t[:, -1]), (lambda t: t[:, 0])
    assert gap(right, last_col, first_col) < 0.3 * gap(pairs, last_col, first_col)
    # Layers change fast with depth, so rows continue less smoothly than columns.
    last_row, first_row = (lambda t: t[-1]), (lambda t: t[0])
    assert gap(below, last_row, first_row) < 0.5 * gap(pairs, last_row, first_row)


def test_statistics_look_like_the_real_set(synth):
    tiles = load_dataset(synth, "train", cache=False)
    coverage = tiles.coverage
    assert 0.3 <= (coverage == 0).mean() <= 0.5
    assert ((coverage > 0) & (coverage < 0.1)).mean() > 0.05
    assert ((coverage >= 0.1) & (coverage < 0.9)).mean() > 0.2
    assert (coverage >= 0.9).mean() > 0.03
    assert (coverage == 1).any()
    test = load_dataset(synth, "test", cache=False)
    images = np.concatenate([tiles.images, test.images]).reshape(-1, TILE * TILE)
    constant = (images.max(axis=1) == images.min(axis=1)).mean()
    assert 0.003 < constant < 0.1
    assert 0.35 < images.mean() < 0.6 and 0.1 < images.std() < 0.25


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate_dataset(tmp_path / name, n_train=30, n_test=20, seed=seed)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files) == 30 * 2 + 20 + 3 + 1  # the CSVs and the marker
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a/train.csv").read_bytes() != (tmp_path / "c/train.csv").read_bytes()


def test_overwrite_protection(tmp_path):
    generate_dataset(tmp_path, n_train=10, n_test=5)
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(SaltsegError, match="already holds a dataset"):
        generate_dataset(tmp_path, n_train=10, n_test=5)
    generate_dataset(tmp_path, n_train=7, n_test=3, overwrite=True)
    assert len(_stems(tmp_path / "train/images")) == 7
    assert len(_stems(tmp_path / "test/images")) == 3
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_overwrite_refuses_a_dataset_saltseg_did_not_make(tmp_path):
    real = tmp_path / "kaggle"
    (real / "train" / "images").mkdir(parents=True)
    (real / "train" / "images" / "abc.png").write_bytes(b"real tile")
    (real / "train.csv").write_text("id,rle_mask\nabc,\n")
    with pytest.raises(SaltsegError, match="saltseg did not generate .*refusing to delete"):
        generate_dataset(real, n_train=4, n_test=2, overwrite=True)
    assert (real / "train" / "images" / "abc.png").read_bytes() == b"real tile"
    assert sorted(p.name for p in real.iterdir()) == ["train", "train.csv"]


def test_marker_lets_overwrite_replace_its_own_dataset(tmp_path):
    generate_dataset(tmp_path, n_train=4, n_test=2, seed=1)
    assert is_synthetic(tmp_path)
    assert json.loads((tmp_path / MARKER).read_text())["seed"] == 1
    (tmp_path / MARKER).unlink()
    with pytest.raises(SaltsegError, match="did not generate"):
        generate_dataset(tmp_path, n_train=4, n_test=2, overwrite=True)


@pytest.mark.parametrize("sizes", [(-1, 5), (0, 0)])
def test_bad_sizes(tmp_path, sizes):
    with pytest.raises(SaltsegError, match="n_train"):
        generate_dataset(tmp_path, *sizes)


def test_make_section_shape_range_and_determinism():
    image, salt = make_section(np.random.default_rng(3), 202, 303)
    assert image.shape == salt.shape == (202, 303)
    assert image.dtype == np.float32 and salt.dtype == np.bool_
    assert image.min() >= 0 and image.max() <= 1 and image.std() > 0.05
    again, salt_again = make_section(np.random.default_rng(3), 202, 303)
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(salt, salt_again)
    with pytest.raises(SaltsegError):
        make_section(np.random.default_rng(0), 4, 100)


def test_salt_is_quieter_than_the_layers_around_it():
    quieter = []
    for seed in range(6):
        image, salt = make_section(np.random.default_rng(seed), 303, 505)
        step = np.abs(np.diff(image, axis=0))
        inside = salt[1:] & salt[:-1]
        outside = ~salt[1:] & ~salt[:-1] & (image[1:] > 0) & (image[:-1] > 0)
        quieter.append(step[inside].mean() < step[outside].mean())
    assert sum(quieter) >= 4


def test_loader_reads_the_layout_back(synth):
    train = load_dataset(synth, "train", cache=False)
    test = load_dataset(synth, "test", cache=False)
    assert len(train) == 400 and len(test) == 200 and test.masks is None
    assert np.isfinite(train.depths).all() and np.isfinite(test.depths).all()
    rows = {r["id"]: r["rle_mask"] for r in _rows(synth / "train.csv")}
    for k in range(0, 400, 37):
        np.testing.assert_array_equal(train.masks[k], rle_decode(rows[train.ids[k]]))


def test_write_preview(synth, tmp_path, tgs_sample):
    path = tmp_path / "preview.png"
    stats = write_preview(path, synth, tgs_sample, n_tiles=12, columns=4)
    assert set(stats) == {"synthetic", "real"}
    assert sum(stats["real"].coverage.values()) == pytest.approx(1)
    assert set(stats["synthetic"].coverage) == set(COVERAGE_BINS)
    with Image.open(path) as image:
        assert image.mode == "RGB" and image.width > 2 * 4 * 2 * TILE
    assert "synthetic" in format_stats(stats) and "cov empty" in format_stats(stats)


def test_cli_synth_generate_refuse_and_preview(tmp_path, tgs_sample):
    out = tmp_path / "data"
    result = runner.invoke(app, ["synth", str(out), "--n-train", "20", "--n-test", "10"])
    assert result.exit_code == 0, result.output
    assert "wrote 20 train + 10 test tiles" in result.output
    assert len(_stems(out / "test/images")) == 10
    result = runner.invoke(app, ["synth", str(out)])
    assert result.exit_code == 2 and "already holds a dataset" in result.output
    preview = tmp_path / "preview.png"
    args = ["synth", str(out), "--preview", str(preview), "--real", str(tgs_sample)]
    result = runner.invoke(app, [*args, "--preview-tiles", "8"])
    assert result.exit_code == 0, result.output
    assert "previewing the dataset already in" in result.output and preview.exists()
    assert "real" in result.output and "cov full" in result.output


def test_cli_synth_preview_without_out_and_errors(tmp_path):
    preview = tmp_path / "p.png"
    result = runner.invoke(app, ["synth", "--preview", str(preview), "--n-train", "20"])
    assert result.exit_code == 0, result.output
    assert preview.exists() and "synthetic" in result.output
    result = runner.invoke(app, ["synth"])
    assert result.exit_code == 2 and "error:" in result.output
    result = runner.invoke(app, ["synth", str(tmp_path / "x"), "--real", str(tmp_path)])
    assert result.exit_code == 2 and "--real" in result.output
