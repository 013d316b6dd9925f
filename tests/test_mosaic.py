"""Jigsaw solver: descriptors, index, links, assembly, evaluation, post-processing and CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from saltseg.cli import app
from saltseg.data.tiles_io import write_image_png, write_mask_png
from saltseg.errors import SaltsegError
from saltseg.mosaic import (
    Layout,
    MosaicConfig,
    continue_salt_down,
    edge_descriptors,
    edge_std,
    evaluate_links,
    evaluate_mosaics,
    find_candidates,
    load_tiles,
    mosaic_groups,
    mutual_links,
    nearest,
    read_truth,
    render_mosaic,
    run_mosaic,
    solve,
    true_links,
)
from saltseg.rle import rle_encode

TILE = 101


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    fy, fx = np.fft.fftfreq(x.shape[0])[:, None], np.fft.rfftfreq(x.shape[1])[None, :]
    gain = np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    return np.fft.irfft2(np.fft.rfft2(x) * gain, s=x.shape)


def _section(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Layers read along a warped, dipping depth, plus texture, a smooth trend and noise."""
    h, w = rows * TILE, cols * TILE
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    warp = _blur(rng.standard_normal((h, w)), 40)
    depth = y + rng.uniform(-0.4, 0.4) * x + warp / warp.std() * rng.uniform(4, 15)
    depth -= depth.min()
    kernel = np.exp(-0.5 * (np.arange(-12, 13) / 2.5) ** 2)
    profile = np.convolve(rng.standard_normal(int(depth.max()) + 2), kernel, "same")
    image = np.interp(depth, np.arange(len(profile)), profile)
    texture = _blur(rng.standard_normal((h, w)), 3)
    image = image / image.std() + 0.4 * texture / texture.std()
    image += 30 * _blur(rng.standard_normal((h, w)), 40) + 0.1 * rng.standard_normal((h, w))
    return image


def _stretch(tile: np.ndarray) -> np.ndarray:
    """Each tile contrast-stretched on its own and quantised to 8 bits, as in the real data."""
    tile = (tile - tile.min()) / (tile.max() - tile.min())
    return (np.round(tile * 255) / 255).astype(np.float32)


def make_tiles(n_sections=3, shape=(6, 7), n_constant=3, seed=0):
    """Shuffled tiles of synthetic sections plus constant tiles, and the true layout."""
    rng = np.random.default_rng(seed)
    tiles, rows = [], []
    for s in range(n_sections):
        image = _section(rng, *shape)
        for r in range(shape[0]):
            for c in range(shape[1]):
                tiles.append(_stretch(image[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE]))
                rows.append((s, r, c))
    for k in range(n_constant):
        tiles.append(np.full((TILE, TILE), (k + 1) / (n_constant + 1), np.float32))
        rows.append((n_sections + k, 0, 0))
    order = rng.permutation(len(tiles))
    ids = [f"t{i:04d}" for i in range(len(tiles))]
    truth = pd.DataFrame(np.array(rows)[order], columns=["section", "row", "col"])
    truth.insert(0, "id", ids)
    return ids, np.stack(tiles)[order], truth


@pytest.fixture(scope="module")
def synthetic():
    return make_tiles()


@pytest.fixture(scope="module")
def solved(synthetic):
    ids, images, _ = synthetic
    return solve(images, ids)


def write_kaggle(root, ids, images, n_train):
    """A Kaggle-layout folder: the first ``n_train`` tiles with (striped) masks, the rest test."""
    for split in ("train/images", "train/masks", "test/images"):
        (root / split).mkdir(parents=True)
    masks = {}
    for k, (tile_id, image) in enumerate(zip(ids, images, strict=True)):
        split = "train" if k < n_train else "test"
        write_image_png(root / split / "images" / f"{tile_id}.png", image)
        if split == "train":
            masks[tile_id] = np.zeros((TILE, TILE), bool)
            masks[tile_id][:, : k % 3 * 30] = True
            write_mask_png(root / "train" / "masks" / f"{tile_id}.png", masks[tile_id])
    return masks


def test_descriptors_match_across_the_seam():
    rng = np.random.default_rng(1)
    image = _section(rng, 1, 2)
    left, right = image[:, :TILE], image[:, TILE:]
    tiles = np.stack([_stretch(left), _stretch(right), _stretch(rng.random((TILE, TILE)))])
    out, inc = edge_descriptors(tiles, "right"), edge_descriptors(tiles, "left")
    assert out.shape == (3, 2 * TILE) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    assert np.linalg.norm(out[0] - inc[1]) < 0.6 < np.linalg.norm(out[0] - inc[2])
    assert edge_descriptors(tiles, "bottom").shape == (3, 2 * TILE)


def test_constant_edges_are_degenerate():
    tiles = np.zeros((3, 8, 8), np.float32)
    tiles[1] = np.arange(8) / 8  # a ramp along rows: constant columns
    tiles[2] = (np.arange(8) / 8) ** 2
    assert edge_std(tiles, "right").tolist() == [0, 0, 0]
    assert edge_std(tiles, "bottom")[1] < 1e-6 < edge_std(tiles, "bottom")[2]
    assert not edge_descriptors(tiles, "left")[0].any()
    with pytest.raises(SaltsegError, match="side"):
        edge_descriptors(tiles, "diagonal")


@pytest.mark.parametrize("method", ["exact", "annoy"])
def test_nearest_finds_neighbours_and_skips_self(method):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((300, 16)).astype(np.float32)
    queries = base + 0.01 * rng.standard_normal(base.shape).astype(np.float32)
    found, dist = nearest(base, queries, 2, method=method, n_trees=8, search_k=2000)
    assert (found[:, 0] == np.arange(300)).all()
    assert (dist[:, 0] <= dist[:, 1]).all()
    found, _ = nearest(base, queries, 2, method=method, exclude_self=np.arange(300))
    assert (found != np.arange(300)[:, None]).all()
    with pytest.raises(SaltsegError, match="method"):
        nearest(base, queries, 2, method="faiss")


def test_links_precision_and_recall_at_defaults(synthetic, solved):
    _, _, truth = synthetic
    scores = evaluate_links(truth, solved.neighbors)
    assert scores["precision"] >= 0.99
    assert scores["recall"] >= 0.9
    direct = solved.neighbors[solved.neighbors["ratio"].notna()]
    assert evaluate_links(truth, direct)["precision"] >= 0.99


def test_assembly_reproduces_relative_positions(synthetic, solved):
    ids, _, truth = synthetic
    mosaics = solved.mosaics
    assert sorted(mosaics["id"]) == sorted(ids)  # every tile exactly once
    assert not mosaics.duplicated(["mosaic", "row", "col"]).any()
    scores = evaluate_mosaics(truth, mosaics)
    assert scores["pair_accuracy"] == 1.0
    assert scores["largest"] >= 0.9 * 6 * 7


def test_constant_tiles_never_link(synthetic, solved):
    _, images, truth = synthetic
    constant = set(truth["id"][images.reshape(len(images), -1).std(axis=1) == 0])
    assert len(constant) == 3
    linked = set(solved.neighbors["a"]) | set(solved.neighbors["b"])
    assert not constant & linked
    sizes = solved.mosaics["mosaic"].map(solved.mosaics["mosaic"].value_counts())
    assert (sizes[solved.mosaics["id"].isin(constant)] == 1).all()


def test_mutual_links_pass_both_ratio_tests(synthetic):
    _, images, _ = synthetic
    config = MosaicConfig(method="exact", min_ratio=0.3)
    links = mutual_links(find_candidates(images, config), config)
    assert (links["ratio"] >= 0.3).all() and (links["distance"] <= config.max_distance).all()
    assert not links.duplicated(["a", "side"]).any() and not links.duplicated(["b", "side"]).any()


def test_layout_rejects_conflicts():
    layout = Layout(4)
    assert layout.join(0, 1, 0, 1)  # 1 right of 0
    assert not layout.join(0, 2, 0, 1)  # 2 would share the cell of 1
    assert layout.join(1, 2, 1, 0)  # 2 below 1
    assert not layout.join(0, 2, 0, 1)  # 2 sits elsewhere already
    assert layout.join(0, 2, 1, 1) and layout.size(2) == 3
    frame = layout.frame()
    assert frame.loc[[0, 1, 2], ["row", "col"]].values.tolist() == [[0, 0], [0, 1], [1, 1]]
    assert frame["mosaic"].tolist() == [0, 0, 0, 1]


def test_evaluate_by_hand():
    truth = pd.DataFrame(
        {
            "id": list("abcde"),
            "section": [0, 0, 0, 0, 1],
            "row": [0, 0, 1, 1, 0],
            "col": [0, 1, 0, 1, 0],
        }
    )
    assert len(true_links(truth)) == 4
    links = pd.DataFrame(
        {"a": ["a", "a", "b"], "b": ["b", "c", "e"], "side": ["right", "below", "right"]}
    )
    scores = evaluate_links(truth, links)
    assert (scores["correct"], scores["precision"], scores["recall"]) == (2, 2 / 3, 0.5)
    mosaics = pd.DataFrame(
        {
            "id": list("abcde"),
            "mosaic": [0, 0, 0, 0, 1],
            "row": [5, 5, 6, 7, 0],
            "col": [3, 4, 3, 4, 0],
        }
    )
    result = evaluate_mosaics(truth, mosaics)
    assert (result["pairs"], result["correct_pairs"]) == (6, 3)  # d is misplaced
    with pytest.raises(SaltsegError, match="not in the truth"):
        evaluate_links(truth, pd.DataFrame({"a": ["z"], "b": ["a"], "side": ["right"]}))


def test_continue_salt_down():
    mosaics = pd.DataFrame(
        {"id": ["top", "mid", "low", "side"], "mosaic": 0, "row": [0, 1, 2, 0], "col": [0, 0, 0, 1]}
    )
    top = np.full((TILE, TILE), 0.05, np.float32)
    top[:, 30:60] = 0.95
    probs = {
        "top": top,
        "mid": np.full((TILE, TILE), 0.5, np.float32),
        "low": np.full((TILE, TILE), 0.45, np.float32),
        "side": np.full((TILE, TILE), 0.5, np.float32),
    }
    out = continue_salt_down(mosaics, probs)
    assert (out["mid"][:, 30:60] == np.float32(0.95)).all() and (out["mid"][:, :30] == 0.5).all()
    assert (out["low"][:, 30:60] == np.float32(0.95)).all()  # carried on down the chain
    np.testing.assert_array_equal(out["side"], probs["side"])
    assert (probs["mid"] == 0.5).all()  # inputs untouched
    certain = dict(probs, mid=np.full((TILE, TILE), 0.01, np.float32))
    np.testing.assert_array_equal(continue_salt_down(mosaics, certain)["mid"], certain["mid"])


def test_render_mosaic_tints_masks():
    images = np.full((2, 4, 4), 0.5, np.float32)
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    picture = render_mosaic(
        ["a", "b"], images, [0, 1], [0, 1], masks={"a": mask}, predictions={"b": mask}
    )
    assert picture.shape == (8, 8, 3) and picture.dtype == np.uint8
    assert picture[0, 0, 0] > picture[0, 0, 2] and picture[4, 4, 2] > picture[4, 4, 0]
    assert (picture[0, 4] == 32).all()  # empty cell


def test_cli_mosaic_and_eval(tmp_path, monkeypatch, synthetic):
    monkeypatch.setenv("SALTSEG_CACHE_DIR", str(tmp_path / "cache"))
    ids, images, truth = synthetic
    data, out = tmp_path / "data", tmp_path / "out"
    masks = write_kaggle(data, ids, images, n_train=60)
    truth.to_csv(tmp_path / "truth.csv", index=False)
    pd.DataFrame({"id": ids[:5], "rle_mask": [rle_encode(masks[i]) for i in ids[:5]]}).to_csv(
        tmp_path / "sub.csv", index=False
    )
    runner = CliRunner()
    result = runner.invoke(
        app, ["mosaic", "--data", str(data), "--out", str(out), "--pred", str(tmp_path / "sub.csv")]
    )
    assert result.exit_code == 0, result.output
    assert "mosaics" in result.output
    neighbors = pd.read_csv(out / "neighbors.csv")
    assert list(neighbors.columns) == ["a", "b", "side", "distance", "ratio"]
    assert set(neighbors["side"]) == {"right", "below"}
    assert len(pd.read_csv(out / "mosaics.csv")) == len(ids)
    assert len(list(out.glob("mosaic_*.png"))) >= 3
    groups = mosaic_groups(out / "mosaics.csv")
    assert set(groups) == set(ids) and len(set(groups.values())) < len(ids)

    args = [
        "mosaic-eval",
        "--truth",
        str(tmp_path / "truth.csv"),
        "--links",
        str(out / "neighbors.csv"),
    ]
    result = runner.invoke(app, [*args, "--mosaics", str(out / "mosaics.csv")])
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and "pair accuracy 1.0000" in result.output
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0 and '"recall"' in result.output


def test_cli_bad_input(tmp_path, monkeypatch, synthetic):
    monkeypatch.setenv("SALTSEG_CACHE_DIR", str(tmp_path / "cache"))
    ids, images, _ = synthetic
    runner = CliRunner()
    empty = tmp_path / "empty"
    (empty / "test" / "images").mkdir(parents=True)
    result = runner.invoke(app, ["mosaic", "--data", str(empty), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "error:" in result.output and "no PNG" in result.output
    result = runner.invoke(app, ["mosaic", "--data", str(tmp_path / "nowhere"), "--out", "o"])
    assert result.exit_code == 2 and "no train/images or test/images" in result.output

    data = tmp_path / "data"
    write_kaggle(data, ids[:6], images[:6], n_train=3)
    sub = tmp_path / "sub.csv"
    sub.write_text("id,rle_mask\nnot-a-tile,1 5\n")
    result = runner.invoke(app, ["mosaic", "--data", str(data), "--out", "o", "--pred", str(sub)])
    assert result.exit_code == 2 and "not-a-tile" in result.output

    write_image_png(data / "test" / "images" / "small.png", np.zeros((50, 50), np.float32))
    result = runner.invoke(app, ["mosaic", "--data", str(data), "--out", "o"])
    assert result.exit_code == 2 and "small.png" in result.output

    with pytest.raises(SaltsegError, match="min_ratio"):
        MosaicConfig(min_ratio=1.5)
    with pytest.raises(SaltsegError, match="does not exist"):
        read_truth(tmp_path / "missing.csv")


def test_lead_synthetic_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("SALTSEG_CACHE_DIR", str(tmp_path / "cache"))
    from saltseg.data.synthetic import generate_dataset

    generate_dataset(tmp_path / "data", n_train=300, n_test=300, seed=3)
    summary = run_mosaic(tmp_path / "data", tmp_path / "out", min_size=1000)
    assert summary["tiles"] == 600
    truth = read_truth(tmp_path / "data" / "mosaic_truth.csv")
    links = pd.read_csv(tmp_path / "out" / "neighbors.csv", dtype={"a": str, "b": str})
    scores = evaluate_links(truth, links)
    assert scores["precision"] >= 0.99 and scores["recall"] >= 0.7
    mosaics = pd.read_csv(tmp_path / "out" / "mosaics.csv", dtype={"id": str})
    assert evaluate_mosaics(truth, mosaics)["pair_accuracy"] >= 0.99


def test_real_sample(tgs_sample, tmp_path, monkeypatch):
    monkeypatch.setenv("SALTSEG_CACHE_DIR", str(tmp_path / "cache"))
    tiles = load_tiles(tgs_sample)
    result = solve(tiles.images, tiles.ids)
    assert sorted(result.mosaics["id"]) == sorted(tiles.ids)
    links = result.neighbors
    found = set(zip(links["a"], links["b"], links["side"], strict=True))
    # two seams that are plain to the eye in the sample
    assert {("ef58213c9b", "d538594e14", "below"), ("74ab2a9b1a", "367c6fb412", "below")} <= found
    blank = {i for i, image in zip(tiles.ids, tiles.images, strict=True) if image.std() == 0}
    assert blank and not blank & (set(links["a"]) | set(links["b"]))
