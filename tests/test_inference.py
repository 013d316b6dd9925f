"""Inference on a tiny trained run: submission, tuning, ONNX parity, ensembles, errors, CLI."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from saltseg.checkpoints import load_model
from saltseg.cli import app
from saltseg.data.tgs import load_dataset
from saltseg.errors import SaltsegError
from saltseg.inference.ensemble import Ensemble, select_members
from saltseg.inference.onnx import export_run, load_onnx
from saltseg.inference.pipeline import predict_folder, tune_runs
from saltseg.metrics import competition_metric
from saltseg.rle import rle_decode
from saltseg.runs import Run
from saltseg.tta import predict_with, prepare_inputs, torch_runner


@pytest.fixture(scope="session")
def data(tiny_data):
    return tiny_data


@pytest.fixture(scope="session")
def run(tiny_run):
    return tiny_run


@pytest.fixture(scope="session")
def run_128(run, tmp_path_factory):
    """The same weights behind another input geometry (reflect-padded to 128)."""
    out = tmp_path_factory.mktemp("inference-runs") / "b"
    shutil.copytree(run, out, ignore=shutil.ignore_patterns("last.ckpt", "logs", "onnx"))
    for ckpt in out.glob("fold_*/best.ckpt"):
        state = torch.load(ckpt, weights_only=False)
        state["hyper_parameters"]["config"]["augment"]["size"] = 128
        torch.save(state, ckpt)
    return out


def read_submission(path):
    return pd.read_csv(path, dtype={"id": str}, keep_default_na=False)


def test_predict_writes_a_valid_submission(run, data, tmp_path):
    summary = predict_folder(
        [run], data, tmp_path, masks=True, save_probs=True, chunk_size=4, progress=False
    )
    test_ids = sorted(p.stem for p in (data / "test" / "images").glob("*.png"))
    frame = read_submission(tmp_path / "submission.csv")
    assert frame["id"].tolist() == test_ids and frame["id"].is_unique
    decoded = [rle_decode(r, (101, 101)) for r in frame["rle_mask"]]
    assert all(m.shape == (101, 101) for m in decoded)
    assert frame.set_index("id").loc["0000000000", "rle_mask"] == ""  # constant tile
    assert summary["n_tiles"] == 10 and summary["n_models"] == 2
    assert sorted(p.stem for p in (tmp_path / "masks").glob("*.png")) == test_ids
    with np.load(tmp_path / "probs.npz") as probs:
        assert probs["ids"].tolist() == test_ids
        assert probs["mask"].shape == (10, 101, 101) and probs["mask"].dtype == np.float16
        assert probs["cls"].shape == (10,)
    assert not list(tmp_path.glob(".*.tmp"))
    record = json.loads((tmp_path / "predict.json").read_text())
    assert record["tta"] == ["none", "hflip"] and len(record["members"]) == 2


def test_ensemble_of_runs_is_the_mean_of_run_predictions(run, run_128, data):
    images = np.random.default_rng(1).random((3, 101, 101)).astype(np.float32)
    a = Ensemble.load([run]).predict(images)
    b = Ensemble.load([run_128]).predict(images)
    assert np.abs(a["mask"] - b["mask"]).max() > 1e-4  # the geometry matters
    both = Ensemble.load([run, run_128], weights="1,3").predict(images)
    assert np.allclose(both["mask"], 0.25 * a["mask"] + 0.75 * b["mask"], atol=1e-6)
    assert np.allclose(both["cls"], 0.25 * a["cls"] + 0.75 * b["cls"], atol=1e-6)
    top = Ensemble.load([run], top_k=1)
    best = max(
        (0, 1), key=lambda f: json.loads((run / f"fold_{f}/score.json").read_text())["oof_score"]
    )
    assert [m.fold for m in top.members] == [best]
    model, cfg, _ = load_model(run / f"fold_{best}" / "best.ckpt")
    single = predict_with(torch_runner(model), cfg, images, tta=("none", "hflip"))
    assert np.allclose(top.predict(images)["mask"], single["mask"], atol=1e-6)


def test_tune_saves_postprocess_that_predict_applies(run, run_128, data, tmp_path):
    run = run_copy(run, tmp_path)
    pp, path = tune_runs([run], data=data)
    assert path == run / "postprocess.json"
    saved = json.loads(path.read_text())
    assert saved["threshold"] == pp.threshold and saved["min_area"] == pp.min_area
    oof = Run(run).oof()
    tiles = load_dataset(data, "train")
    rows = [tiles.ids.index(i) for i in oof["ids"]]
    after = competition_metric(
        tiles.masks[rows], pp.apply(oof["mask"], tiles.images[rows], oof["cls"])
    )
    before = competition_metric(tiles.masks[rows], oof["mask"] > 0.5)
    assert saved["info"]["oof_score_after"] == pytest.approx(after)
    assert saved["info"]["oof_score_before"] == pytest.approx(before)
    summary = predict_folder([run], data, tmp_path / "p", progress=False)
    assert summary["postprocess_from"] == str(path)
    ens, ens_path = tune_runs([run, run_128], data=data, out=tmp_path / "ens.json")
    assert ens.info["runs"] == [str(run), str(run_128)] and ens_path.exists()
    with pytest.raises(SaltsegError, match="--out"):
        tune_runs([run, run_128], data=data)


def test_onnx_matches_torch(run, data, tmp_path):
    run = run_copy(run, tmp_path)
    paths = export_run(run)
    assert [p.name for p in paths] == ["fold_0.onnx", "fold_1.onnx"]
    images = np.random.default_rng(2).random((5, 101, 101)).astype(np.float32)
    for member in select_members([run]):
        model, cfg, _ = load_model(member.checkpoint)
        runner, onnx_cfg = load_onnx(member, threads=1)
        assert onnx_cfg == cfg
        x = prepare_inputs(images, None, cfg)
        for batch in (x[:1], x):  # dynamic batch axis
            want, got = torch_runner(model)(batch), runner(batch)
            assert set(want) == set(got) == {"mask", "cls"}
            for name in want:
                assert (want[name] - got[name]).abs().max() < 1e-4
    torch_sub = predict_folder([run], data, tmp_path / "t", save_probs=True, progress=False)
    onnx_sub = predict_folder(
        [run], data, tmp_path / "o", backend="onnx", save_probs=True, progress=False
    )
    assert torch_sub["n_empty"] == onnx_sub["n_empty"]
    with np.load(tmp_path / "t" / "probs.npz") as a, np.load(tmp_path / "o" / "probs.npz") as b:
        assert np.abs(a["mask"].astype(np.float32) - b["mask"]).max() <= 1e-3  # float16 files


def test_prediction_errors(run, data, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SaltsegError, match="not a saltseg run"):
        predict_folder([tmp_path / "empty"], data, tmp_path / "o", progress=False)
    with pytest.raises(SaltsegError, match="no PNG images"):
        predict_folder([run], tmp_path / "empty", tmp_path / "o", progress=False)
    with pytest.raises(SaltsegError, match="unknown TTA view 'rot90'"):
        predict_folder([run], data, tmp_path / "o", tta="none,rot90", progress=False)
    with pytest.raises(SaltsegError, match="--top-k 3"):
        predict_folder([run], data, tmp_path / "o", top_k=3, progress=False)
    with pytest.raises(SaltsegError, match="saltseg export"):
        predict_folder([run_copy(run, tmp_path)], data, tmp_path / "o", backend="onnx")
    assert not (tmp_path / "o" / "submission.csv").exists()


def run_copy(run, tmp_path):
    """A copy of the shared run that a test may change (without exported models)."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("onnx"))
    return copy


def test_plain_folder_and_pseudo_labels(run, data, tmp_path):
    folder = tmp_path / "tiles"
    shutil.copytree(data / "test" / "images", folder)
    summary = predict_folder(
        [run],
        folder,
        tmp_path / "out",
        pseudo_labels=tmp_path / "pseudo",
        pseudo_band=(0.0, 1.0),
        pseudo_max_uncertain=1.0,
        progress=False,
    )
    assert summary["pseudo_labels"]["kept"] == 10  # every tile passes the widest limit
    train = pd.read_csv(tmp_path / "pseudo" / "train.csv", dtype={"id": str})
    assert sorted(train["id"]) == sorted(p.stem for p in folder.glob("*.png"))
    assert not (tmp_path / "pseudo" / "depths.csv").exists()  # the plain folder has no depths


def test_cli_tune_export_predict(run, data, tmp_path):
    run = run_copy(run, tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["tune", "--run", str(run), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "OOF score" in result.output and "->" in result.output
    result = runner.invoke(app, ["export", "--run", str(run), "--out", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "x").glob("*.onnx")) == ["fold_0.onnx", "fold_1.onnx"]
    args = ["predict", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "p")]
    result = runner.invoke(app, [*args, "--tta", "hflip,bright", "--masks", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "10 tiles" in result.output and "2 model(s)" in result.output
    assert len(read_submission(tmp_path / "p" / "submission.csv")) == 10
    result = runner.invoke(app, [*args, "--tta", "spin", "--no-progress"])
    assert result.exit_code == 2 and "error: unknown TTA view 'spin'" in result.output
    share = ["--pseudo-labels", str(tmp_path / "pl"), "--pseudo-share", "0.5", "--no-progress"]
    args[-1] = str(tmp_path / "p2")
    result = runner.invoke(app, [*args, *share])
    assert result.exit_code == 0, result.output
    kept = pd.read_csv(tmp_path / "pl" / "train.csv", keep_default_na=False)
    salt = int((kept["rle_mask"] != "").sum())
    predicted = pd.read_csv(tmp_path / "p2" / "submission.csv", keep_default_na=False)
    n_salt = int((predicted["rle_mask"] != "").sum())  # half of each group, rounded up
    assert salt == -(-n_salt // 2) and len(kept) - salt == -(-(10 - n_salt) // 2)
    result = runner.invoke(app, ["export", "--run", str(run), "--format", "tflite"])
    assert result.exit_code == 2 and "unknown export format" in result.output


@pytest.mark.slow
def test_two_processes_give_the_same_submission(run, data, tmp_path):
    one = predict_folder([run], data, tmp_path / "one", save_probs=True, chunk_size=3)
    two = predict_folder([run], data, tmp_path / "two", save_probs=True, chunk_size=3, devices=2)
    assert one["n_empty"] == two["n_empty"]
    sub_one = (tmp_path / "one" / "submission.csv").read_text()
    assert sub_one == (tmp_path / "two" / "submission.csv").read_text()
    with np.load(tmp_path / "one" / "probs.npz") as a, np.load(tmp_path / "two" / "probs.npz") as b:
        assert np.array_equal(a["mask"], b["mask"]) and np.array_equal(a["ids"], b["ids"])


@pytest.mark.parametrize(
    "heads", [{}, {"classifier_pool": "avgmax", "classifier_stages": True}, {"tile_norm": True}]
)
def test_onnx_export_of_a_fused_classifier_matches_torch(tmp_path, heads):
    from saltseg.config import Config
    from saltseg.inference.onnx import export_onnx, onnx_session, session_runner
    from saltseg.models import create_model

    torch.manual_seed(0)
    model = create_model(
        "unet", encoder="test_resnet", classifier=True, fuse_classifier=True, **heads
    )
    path = export_onnx(model, Config(), tmp_path / "fused.onnx")
    x = torch.rand(3, 1, 101, 101)
    got = session_runner(onnx_session(path, threads=1))(x)
    with torch.no_grad():
        out = model.eval()(x)
    assert (torch.sigmoid(out["mask"]) - got["mask"]).abs().max() < 1e-4
    assert (torch.sigmoid(out["cls"]).reshape(-1) - got["cls"]).abs().max() < 1e-4
