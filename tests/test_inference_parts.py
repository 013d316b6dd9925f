"""Inference parts without a trained run: TTA, ensembling math, tuning, writers, pseudo-labels."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from saltseg.config import load_config
from saltseg.errors import SaltsegError
from saltseg.inference.ensemble import Ensemble, Member, parse_weights, select_members
from saltseg.inference.pseudo import (
    PseudoLabelWriter,
    confident,
    mask_uncertainty,
    uncertain_fraction,
)
from saltseg.inference.source import open_tiles
from saltseg.inference.submission import ProbWriter, SubmissionWriter
from saltseg.metrics import competition_metric
from saltseg.postprocess import (
    PostProcess,
    constant_tiles,
    load_postprocess,
    save_postprocess,
    tune_postprocess,
)
from saltseg.rle import rle_decode
from saltseg.tta import parse_tta, predict_probs

rng = np.random.default_rng(0)


class TinyNet(nn.Module):
    """A small conv net with a classifier; ``symmetric=True`` makes it flip-equivariant."""

    def __init__(self, in_chans=1, symmetric=False):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(in_chans, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 5, padding=2)
        )
        self.symmetric = symmetric

    def forward(self, x):
        y = self.body(x)
        if self.symmetric:
            y = (y + torch.flip(self.body(torch.flip(x, dims=[-1])), dims=[-1])) / 2
        return {"mask": y, "cls": y.mean(dim=(2, 3))}


def config(*overrides):
    return load_config(None, list(overrides))


# --- TTA ---------------------------------------------------------------------------------------


def test_hflip_tta_of_a_flip_equivariant_model_equals_no_tta():
    torch.set_num_threads(1)
    images = rng.random((4, 101, 101)).astype(np.float32)
    images[0] = (images[0] + images[0][:, ::-1]) / 2  # a horizontally symmetric tile too
    model = TinyNet(symmetric=True)
    for cfg in (config(), config("augment.size=128")):
        plain = predict_probs(model, cfg, images, tta=("none",))
        both = predict_probs(model, cfg, images, tta=("none", "hflip"))
        assert np.abs(plain["mask"] - both["mask"]).max() < 1e-6
        assert np.abs(plain["cls"] - both["cls"]).max() < 1e-6
    sym = predict_probs(model, config(), images[:1], tta=("none",))["mask"][0]
    assert np.abs(sym - sym[:, ::-1]).max() < 1e-6


def test_tta_is_the_mean_of_view_probabilities():
    images = rng.random((3, 101, 101)).astype(np.float32)
    model, cfg = TinyNet(), config("augment.size=128")
    plain = predict_probs(model, cfg, images, tta=("none",))["mask"]
    flipped = predict_probs(model, cfg, images[:, :, ::-1].copy(), tta=("none",))["mask"]
    both = predict_probs(model, cfg, images, tta=("none", "hflip"))["mask"]
    assert np.abs(plain - flipped[:, :, ::-1]).max() > 1e-3  # the model is not symmetric
    assert np.allclose(both, (plain + flipped[:, :, ::-1]) / 2, atol=1e-6)
    bright = predict_probs(model, cfg, np.clip(images + 0.08, 0, 1), tta=("none",))["mask"]
    assert np.allclose(
        predict_probs(model, cfg, images, tta=("bright",))["mask"], bright, atol=1e-6
    )
    views = ("none", "hflip", "dark", "contrast", "gamma", "hflip+bright")
    out = predict_probs(model, cfg, images, tta=views)
    assert out["mask"].shape == (3, 101, 101) and out["cls"].shape == (3,)
    assert np.isfinite(out["mask"]).all() and (out["mask"] >= 0).all() and (out["mask"] <= 1).all()


def test_unknown_tta_views_are_rejected():
    assert parse_tta("none, hflip,hflip+gamma") == ("none", "hflip", "hflip+gamma")
    # a string names the views besides the plain tile, as `saltseg predict --tta` does
    assert parse_tta("hflip") == ("none", "hflip") == parse_tta(("none", "hflip"))
    assert parse_tta("none") == ("none",) and parse_tta(("hflip",)) == ("hflip",)
    for bad in ("vflip", "hflip+rotate", ""):
        with pytest.raises(SaltsegError, match="TTA view"):
            parse_tta(bad)


# --- ensembling ----------------------------------------------------------------------------------


def fake_run(root: Path, scores):
    root.mkdir(parents=True)
    (root / "run.json").write_text('{"format": "saltseg-run"}')
    for fold, score in enumerate(scores):
        (root / f"fold_{fold}").mkdir(parents=True)
        (root / f"fold_{fold}" / "best.ckpt").write_bytes(b"")
        (root / f"fold_{fold}" / "score.json").write_text(json.dumps({"oof_score": score}))
    return root


def test_weights_and_top_k_select_members(tmp_path):
    a = fake_run(tmp_path / "a", [0.7, 0.9, 0.8])
    b = fake_run(tmp_path / "b", [0.5, 0.6])
    members = select_members([a, b], weights="3,1", top_k=2)
    assert [(m.run.name, m.fold) for m in members] == [("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    assert [m.weight for m in members] == pytest.approx([0.375, 0.375, 0.125, 0.125])
    top1 = select_members([a], top_k=1)
    assert [(m.fold, m.weight, m.score) for m in top1] == [(1, 1.0, 0.9)]
    assert sum(m.weight for m in select_members([a, b])) == pytest.approx(1.0)
    assert parse_weights(None, 4) == [0.25] * 4
    assert {m.run.name for m in select_members([a, b], weights=[1, 0])} == {"a"}
    with pytest.raises(SaltsegError, match="--top-k 3 but .*b has 2 fold"):
        select_members([a, b], top_k=3)
    with pytest.raises(SaltsegError, match="2 weight"):
        select_members([a], weights="0.5,0.5")
    with pytest.raises(SaltsegError, match="non-negative"):
        parse_weights("1,-1", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SaltsegError, match="not a saltseg run"):
        select_members([tmp_path / "empty"])
    fake_run(tmp_path / "no-folds", [])
    with pytest.raises(SaltsegError, match="no fold checkpoints"):
        select_members([tmp_path / "no-folds"])
    (b / "fold_0" / "score.json").unlink()
    with pytest.raises(SaltsegError, match="score.json"):
        select_members([b], top_k=1)


def constant_runner(value, with_cls=True):
    def run(x):
        out = {"mask": torch.full((len(x), 1, *x.shape[-2:]), float(value))}
        if with_cls:
            out["cls"] = torch.full((len(x),), float(value))
        return out

    return run


def test_ensemble_is_the_weighted_mean_over_members_of_any_size():
    members = [Member(Path("a"), 0, Path("a.ckpt"), 0.75), Member(Path("b"), 0, Path("b"), 0.25)]
    configs = [config(), config("augment.size=128", "augment.geometry=resize")]
    ensemble = Ensemble(members, configs, [constant_runner(0.2), constant_runner(0.6)])
    probs = ensemble.predict(rng.random((5, 101, 101)).astype(np.float32), batch_size=2)
    assert probs["mask"].shape == (5, 101, 101)
    assert np.allclose(probs["mask"], 0.3) and np.allclose(probs["cls"], 0.3)
    assert ensemble.has_cls


def test_ensemble_refuses_different_tasks():
    members = [Member(Path("a"), 0, Path("a.ckpt"), 0.5), Member(Path("b"), 0, Path("b.ckpt"), 0.5)]
    with pytest.raises(SaltsegError, match="cannot ensemble a.ckpt .* with b.ckpt"):
        Ensemble(
            members, [config(), config("data.extra_channels=[depth]")], [constant_runner(0)] * 2
        )
    with pytest.raises(SaltsegError, match="outputs"):
        Ensemble(members, [config()] * 2, [constant_runner(0), constant_runner(0, with_cls=False)])


# --- post-processing -----------------------------------------------------------------------------


def tuning_example():
    """Salt tiles (area >= 40) at prob 0.35 over 0.1; empty tiles with 15-pixel blobs at 0.9."""
    n = 40
    truth = np.zeros((n, 101, 101), bool)
    probs = np.full((n, 101, 101), 0.1, np.float32)
    for i in range(n):
        if i % 2 == 0:
            side = 7 + i // 4
            truth[i, 10 : 10 + side, 20 : 20 + side] = True
            probs[i][truth[i]] = 0.35
        else:
            probs[i, 50:53, 60:65] = 0.9
    return truth, probs


def test_tuning_finds_threshold_and_min_area():
    truth, probs = tuning_example()
    pp = tune_postprocess(truth, probs)
    assert pp.threshold == pytest.approx(0.34)  # best range is [0.1, 0.35); nearest to 0.5
    assert pp.min_area == 20  # blobs have 15 pixels, true salt at least 49
    assert pp.cls_threshold is None
    assert pp.info["oof_score_after"] == 1.0
    assert pp.info["oof_score_before"] == pytest.approx(0.0)  # 0.5 keeps only the blobs
    assert competition_metric(truth, pp.apply(probs)) == 1.0


def test_tuning_finds_the_classifier_gate():
    truth, probs = tuning_example()
    cls = np.where(truth.any(axis=(1, 2)), 0.8, 0.15)
    pp = tune_postprocess(truth, probs, cls=cls)
    assert pp.min_area == 0 and pp.cls_threshold is not None and 0.15 < pp.cls_threshold <= 0.8
    assert competition_metric(truth, pp.apply(probs, cls=cls)) == 1.0
    with pytest.raises(SaltsegError, match="no classifier"):
        pp.apply(probs)


def test_tuning_finds_the_peak_gate(tmp_path):
    # salt: a 10x10 square at 0.55 with a sure pixel (0.95); empty tiles: a 15x15 blob at 0.6.
    # No threshold or minimum area separates them (the blobs are larger and no fainter than the
    # salt); only the highest probability of the tile does.
    truth = np.zeros((8, 101, 101), bool)
    probs = np.full((8, 101, 101), 0.02, np.float32)
    for i in range(8):
        if i % 2:
            truth[i, 40:50, 40:50] = True
            probs[i, 40:50, 40:50] = 0.55
            probs[i, 45, 45] = 0.95
        else:
            probs[i, 10:25, 10:25] = 0.6
    pp = tune_postprocess(truth, probs)
    assert 0.6 < pp.peak_threshold <= 0.95 and pp.threshold < 0.55 and pp.min_area == 0
    assert pp.info["oof_score_after"] == 1.0 and competition_metric(truth, pp.apply(probs)) == 1.0
    assert tune_postprocess(truth, probs, peak_thresholds=(0.0,)).info["oof_score_after"] == 0.5
    assert "peak gate 0.65" in PostProcess(0.5, peak_threshold=0.65).describe()
    save_postprocess(pp, tmp_path / "pp.json")
    assert load_postprocess(tmp_path / "pp.json") == pp
    with pytest.raises(SaltsegError, match="peak_threshold must be null or a number"):
        PostProcess(0.5, peak_threshold=1.5)


def test_tuning_grid_equals_a_direct_search():
    gen = np.random.default_rng(5)
    truth = gen.random((12, 101, 101)) < gen.random((12, 1, 1)) * (gen.random((12, 1, 1)) < 0.6)
    probs = np.clip(truth * 0.5 + gen.random((12, 101, 101)) * 0.6, 0, 1).astype(np.float32)
    cls = gen.random(12)
    grid = {"thresholds": (0.4, 0.6), "min_areas": (0, 500), "cls_thresholds": (0.0, 0.5)}
    grid["peak_thresholds"] = (0.0, 0.95)
    pp = tune_postprocess(truth, probs, cls=cls, **grid)
    best = max(
        competition_metric(truth, PostProcess(t, a, g or None, p or None).apply(probs, cls=cls))
        for t in grid["thresholds"]
        for a in grid["min_areas"]
        for g in grid["cls_thresholds"]
        for p in grid["peak_thresholds"]
    )
    assert pp.info["oof_score_after"] == pytest.approx(best)
    assert competition_metric(truth, pp.apply(probs, cls=cls)) == pytest.approx(best)


def test_constant_tiles_are_predicted_empty(tmp_path):
    images = rng.random((3, 101, 101)).astype(np.float32)
    images[1] = 0.5
    assert constant_tiles(images).tolist() == [False, True, False]
    masks = PostProcess(threshold=0.5).apply(np.full((3, 101, 101), 0.9), images)
    assert masks[0].all() and not masks[1].any() and masks[2].all()
    truth = np.ones((3, 101, 101), bool)
    truth[1] = False
    pp = tune_postprocess(truth, np.full((3, 101, 101), 0.9, np.float32), images)
    assert pp.empty_constant and pp.info["oof_score_after"] == 1.0
    save_postprocess(pp, tmp_path / "pp.json")
    assert load_postprocess(tmp_path / "pp.json") == pp
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(SaltsegError, match="not a post-processing file"):
        load_postprocess(tmp_path / "bad.json")


# --- writers, sources, pseudo-labels --------------------------------------------------------------


def test_submission_and_probability_writers(tmp_path):
    ids = ["a", "b", "c"]
    masks = rng.random((3, 101, 101)) > 0.5
    masks[1] = False
    with SubmissionWriter(tmp_path / "sub.csv", ids) as sub:
        sub.write(ids[:2], masks[:2])
        sub.write(ids[2:], masks[2:])
    frame = pd.read_csv(tmp_path / "sub.csv", keep_default_na=False)
    assert frame["id"].tolist() == ids
    for row, mask in zip(frame["rle_mask"], masks, strict=True):
        assert np.array_equal(rle_decode(row, (101, 101)), mask)
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]
    short = SubmissionWriter(tmp_path / "short.csv", ids)
    short.write(ids[:1], masks[:1])
    with pytest.raises(SaltsegError, match="1 of 3 rows"):
        short.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv"]

    probs = rng.random((3, 101, 101)).astype(np.float32)
    with ProbWriter(tmp_path / "probs.npz", ids) as writer:
        writer.write(probs[:2], np.array([0.1, 0.2]))
        writer.write(probs[2:], np.array([0.3]))
    with np.load(tmp_path / "probs.npz") as saved:
        assert saved["ids"].tolist() == ids
        assert saved["mask"].dtype == np.float16
        assert np.allclose(saved["mask"], probs, atol=1e-3)
        assert np.allclose(saved["cls"], [0.1, 0.2, 0.3])


def test_tile_sources(tmp_path):
    with pytest.raises(SaltsegError, match="no PNG images"):
        open_tiles(tmp_path)
    with pytest.raises(SaltsegError, match="does not exist"):
        open_tiles(tmp_path / "absent")


def test_pseudo_labels_keep_confident_tiles(tmp_path):
    probs = np.full((3, 101, 101), 0.05, np.float32)
    probs[0, :50] = 0.95  # confident salt
    probs[1, :30] = 0.5  # a third uncertain
    probs[2, :1, :50] = 0.5  # 50 uncertain pixels: below 2%
    assert uncertain_fraction(probs)[1] == pytest.approx(30 / 101)
    assert confident(probs).tolist() == [True, False, True]
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"t{i}.png")
        paths[-1].write_bytes(b"png")
    writer = PseudoLabelWriter(tmp_path / "pseudo")
    assert not (tmp_path / "pseudo").exists()  # nothing written before start()
    writer.start()
    kept = writer.write(["t0", "t1", "t2"], paths, probs, probs > 0.5, np.array([1.0, 2.0, 3.0]))
    assert kept == 2
    assert writer.close() == {"kept": 2, "seen": 3, "with_salt": 1}
    train = pd.read_csv(tmp_path / "pseudo" / "train.csv", keep_default_na=False)
    assert train["id"].tolist() == ["t0", "t2"]
    assert np.array_equal(rle_decode(train["rle_mask"][0]), probs[0] > 0.5)
    depths = pd.read_csv(tmp_path / "pseudo" / "depths.csv")
    assert depths["z"].tolist() == [1.0, 3.0]
    assert sorted(p.name for p in (tmp_path / "pseudo" / "train" / "masks").iterdir()) == [
        "t0.png",
        "t2.png",
    ]
    with pytest.raises(SaltsegError, match="earlier result"):
        PseudoLabelWriter(tmp_path / "pseudo")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "train.csv").write_text("mine")
    with pytest.raises(SaltsegError, match="holds no pseudo-labels.json"):
        PseudoLabelWriter(tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "train.csv").read_text() == "mine"
    with pytest.raises(SaltsegError, match="band"):
        PseudoLabelWriter(tmp_path / "other", band=(0.8, 0.2))


def test_pseudo_label_share_keeps_salt_tiles_in_proportion(tmp_path):
    # 4 salt tiles whose masks all have an uncertain rim (none passes the 2% rule), 4 empty ones
    probs = np.full((8, 101, 101), 0.05, np.float32)
    for i, rows in enumerate([60, 40, 20, 5]):  # salt on the first rows, 3 uncertain rows below
        probs[i, :rows] = 0.95
        probs[i, rows : rows + 3] = 0.5
    for i, n in zip(range(4, 8), [0, 400, 100, 2000], strict=True):
        probs[i].reshape(-1)[:n] = 0.4
    masks = probs > 0.5
    assert not confident(probs[:4]).any()
    scores = mask_uncertainty(probs, masks)
    assert scores[0] < scores[1] < scores[2] < scores[3]  # large masks with a thin rim first
    assert scores[4] == 0 and scores[5] == pytest.approx(400 / 101**2)
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"t{i}.png")
        paths[-1].write_bytes(b"png")
    ids = [f"t{i}" for i in range(8)]
    writer = PseudoLabelWriter(tmp_path / "pseudo", share=0.5)
    writer.start()
    writer.write(ids[:5], paths[:5], probs[:5], masks[:5], np.full(5, np.nan))  # two chunks
    writer.write(ids[5:], paths[5:], probs[5:], masks[5:], np.full(3, np.nan))
    assert writer.close() == {"kept": 4, "seen": 8, "with_salt": 2}
    train = pd.read_csv(tmp_path / "pseudo" / "train.csv", keep_default_na=False)
    assert train["id"].tolist() == ["t0", "t1", "t4", "t6"]
    for sub in ("images", "masks"):
        names = sorted(p.name for p in (tmp_path / "pseudo" / "train" / sub).iterdir())
        assert names == ["t0.png", "t1.png", "t4.png", "t6.png"]
    assert json.loads((tmp_path / "pseudo" / "pseudo-labels.json").read_text())["share"] == 0.5
    with pytest.raises(SaltsegError, match="share"):
        PseudoLabelWriter(tmp_path / "other", share=0.0)
    assert not (tmp_path / "other").exists()
