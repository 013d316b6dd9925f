import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from saltseg.cli import app
from saltseg.config import Config
from saltseg.data.tiles_io import write_image_png, write_mask_png
from saltseg.errors import SaltsegError
from saltseg.io import write_json
from saltseg.metrics import competition_metric
from saltseg.report import analyse, write_report
from saltseg.report.analysis import calibration_table
from saltseg.report.tables import category_table, coverage_table, tile_table, worst_tiles
from saltseg.runs import Run
from tests.helpers import make_layout

S = 101


def constructed():
    """Nine tiles whose categories, IoUs and scores are known by hand.

    0, 1 true empty; 2 false positive (100 px); 3, 4 missed; 5 poor (IoU 1/7);
    6, 7 partial (IoU 0.8, score 0.6); 8 good (full tile).
    """
    truth = np.zeros((9, S, S), bool)
    probs = np.zeros((9, S, S), np.float32)
    probs[0:2] = 0.1
    probs[2, :10, :10] = 0.9
    truth[3:6, :20, :20] = True
    probs[3:5, :20, :20] = 0.3
    probs[5, :20, 15:35] = 0.9
    truth[6:8, :40, :40] = True
    probs[6:8, :40, :50] = 0.7
    truth[8] = True
    probs[8] = 0.8
    return truth, probs


SCORES = np.array([1, 1, 0, 0, 0, 0, 0.6, 0.6, 1])


def write_fake_run(root, truth, probs, cls=None, postprocess=None, extra_ids=()):
    """A data folder and a run folder holding the given out-of-fold probabilities (2 folds)."""
    data, run = root / "data", root / "run"
    for sub in ("train/images", "train/masks"):
        (data / sub).mkdir(parents=True)
    ids = [f"{k:010x}" for k in range(len(truth))]
    rng = np.random.default_rng(0)
    for tile_id, mask in zip(ids, truth, strict=True):
        write_image_png(data / "train/images" / f"{tile_id}.png", rng.random((S, S)))
        write_mask_png(data / "train/masks" / f"{tile_id}.png", mask)
    depths = pd.DataFrame({"id": ids, "z": 100 * np.arange(1, len(ids) + 1)})
    depths.to_csv(data / "depths.csv", index=False)
    folds = np.arange(len(truth)) % 2
    owner = Run(run)
    config = Config.model_validate({"data": {"k": 2}})
    owner.initialise(config, pd.DataFrame({"id": ids, "fold": folds}))
    for fold in (0, 1):
        sel = np.flatnonzero(folds == fold)
        (run / f"fold_{fold}").mkdir(parents=True)
        arrays = {"mask": probs[sel]}
        if cls is not None:
            arrays["cls"] = cls[sel]
        fold_ids = [ids[i] for i in sel] + (list(extra_ids) if fold == 0 else [])
        if extra_ids and fold == 0:
            arrays["mask"] = np.concatenate([arrays["mask"], np.zeros((len(extra_ids), S, S))])
        owner.save_oof(fold, fold_ids, arrays)
        metrics = pd.DataFrame(
            {"epoch": [0, 0, 1, 1], "train_loss": [1.0, np.nan, 0.5, np.nan]}
            | {"val_loss": [np.nan, 0.9, np.nan, 0.6], "val_metric": [np.nan, 0.3, np.nan, 0.5]}
        )
        metrics.to_csv(run / f"fold_{fold}" / "metrics.csv", index=False)
        write_json({"fold": fold, "best_epoch": 1}, run / f"fold_{fold}" / "score.json")
    write_json({"oof_score": 0.0, "threshold": 0.5}, run / "oof_score.json")
    if postprocess is not None:
        write_json(postprocess, run / "postprocess.json")
    return run, data


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A one-epoch, two-fold demo run on a tiny Kaggle layout."""
    import torch

    from saltseg.config import load_config
    from saltseg.training.kfold import train_kfold

    root = tmp_path_factory.mktemp("real")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SALTSEG_CACHE_DIR", str(root / "cache"))
        make_layout(root / "data", n=12)
        overrides = ["trainer.epochs=1", "data.k=2", "data.batch_size=8"]
        overrides += ["model.encoder=resnet18", "model.decoder_width=0.25"]
        config = load_config("configs/demo.yaml", overrides)
        train_kfold(config, root / "run", data=root / "data", progress=False)
    torch.set_num_threads(threads)
    return root / "run", root / "data"


def test_categories_counted_and_loss_shares_sum_to_total():
    truth, probs = constructed()
    tiles = tile_table([str(k) for k in range(9)], truth, probs > 0.5)
    assert np.allclose(tiles["score"], SCORES)
    assert tiles["iou"][5] == pytest.approx(1 / 7)
    table = category_table(tiles).set_index("category")
    counts = table["n"].to_dict()
    expected = {"true_empty": 2, "false_positive": 1, "missed": 2, "poor": 1}
    assert counts == expected | {"partial": 2, "good": 1}
    total_loss = (1 - SCORES).sum()  # 4.8
    assert table["loss_share"].sum() == pytest.approx(1.0)
    assert table.loc["false_positive", "loss_share"] == pytest.approx(1 / total_loss)
    assert table.loc["missed", "loss_share"] == pytest.approx(2 / total_loss)
    assert table.loc["partial", "loss_share"] == pytest.approx(0.8 / total_loss)
    assert table["loss"].sum() == pytest.approx(1 - SCORES.mean())
    assert table.loc["partial", "mean_score"] == pytest.approx(0.6)


def test_iou_of_exactly_a_threshold_passes_none():
    truth = np.zeros((2, S, S), bool)
    truth[:, :20, :20] = True
    pred = np.zeros_like(truth)
    pred[0, :20, :10] = True  # IoU 0.5
    pred[1, :19, :20] = True  # IoU 0.95
    tiles = tile_table(["a", "b"], truth, pred)
    assert tiles["iou"].tolist() == pytest.approx([0.5, 0.95])
    assert tiles["score"].tolist() == pytest.approx([0.0, 0.9])
    assert tiles["category"].tolist() == ["poor", "partial"]


def test_coverage_classes():
    truth, probs = constructed()
    tiles = tile_table([str(k) for k in range(9)], truth, probs > 0.5)
    table = coverage_table(tiles).set_index("coverage_class")
    assert table.index.tolist() == [0, 1, 2, 10]
    assert table["n"].tolist() == [3, 3, 2, 1]
    assert table["mean_score"].tolist() == pytest.approx([2 / 3, 0, 0.6, 1])
    assert table["pred_empty"].tolist() == [2, 2, 0, 0]
    assert table["range"].tolist() == ["empty", "0-10%", "10-20%", "90-100%"]


def test_worst_tiles_break_ties_by_error_area():
    truth, probs = constructed()
    tiles = tile_table([str(k) for k in range(9)], truth, probs > 0.5)
    tiles.loc[3, "error_area"] = 5  # two missed tiles, same score 0: the larger error first
    assert worst_tiles(tiles, "missed", 5)["id"].tolist() == ["4", "3"]
    assert worst_tiles(tiles, "missed", 1)["id"].tolist() == ["4"]


def test_calibration_bins():
    probs = np.array([np.full((2, 2), 0.25), np.full((2, 2), 0.95)])
    truth = np.array([[[1, 0], [0, 0]], [[1, 1], [1, 1]]], bool)
    table, ece = calibration_table(probs, truth)
    assert table["lo"].tolist() == [0.2, 0.9]
    assert table["salt_fraction"].tolist() == pytest.approx([0.25, 1.0])
    assert ece == pytest.approx(0.025)


def test_analyse_fake_run(tmp_path):
    truth, probs = constructed()
    cls = np.array([0.1, 0.6, 0.2, 0.9, 0.4, 0.8, 0.9, 0.9, 0.9])
    run, data = write_fake_run(tmp_path, truth, probs, cls=cls)
    report = analyse(run, data)
    assert report.n_tiles == 9 and report.score == pytest.approx(SCORES.mean())
    assert report.score_postprocessed is None
    assert report.categories.set_index("category")["n"]["missed"] == 2
    assert report.folds["n"].tolist() == [5, 4]
    assert report.folds["score"].tolist() == pytest.approx([2.6 / 5, 1.6 / 4])
    assert report.folds["best_epoch"].tolist() == [1, 1]
    assert report.curves[0]["train_loss"].tolist() == [1.0, 0.5]
    assert report.curves[1]["val_metric"].tolist() == [0.3, 0.5]
    assert report.depth["n"].sum() == 9
    clf = report.classifier
    assert (clf["salt_called_salt"], clf["salt_called_empty"]) == (5, 1)
    assert (clf["empty_called_salt"], clf["empty_called_empty"]) == (1, 2)
    sweep = report.sweep.set_index("threshold")["score"]
    assert sweep[0.5] == pytest.approx(report.score)
    assert sweep[0.2] == pytest.approx(competition_metric(truth, probs > 0.2))


def test_postprocess_json_is_applied(tmp_path):
    truth, probs = constructed()
    run, data = write_fake_run(tmp_path, truth, probs, postprocess={"min_area": 150})
    report = analyse(run, data)
    assert report.score == pytest.approx(SCORES.mean())
    assert report.score_postprocessed == pytest.approx((SCORES.sum() + 1) / 9)
    counts = report.categories.set_index("category")["n"]
    assert (counts["true_empty"], counts["false_positive"]) == (3, 0)
    assert "score_postprocessed" in report.sweep


def test_report_html_is_self_contained(real_run, tmp_path):
    run, data = real_run
    out = write_report(run, data, tmp_path / "sub" / "report.html", worst=3)
    html = out.read_text()
    score = json.loads((run / "oof_score.json").read_text())["oof_score"]
    assert f"{score:.4f}" in html
    assert "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)
    assert "Missed salt" in html and "Threshold sweep" in html
    assert html.count("<img") >= 5
    bare = write_report(run, data, tmp_path / "bare.html", worst=0).read_text()
    assert "Worst tiles" in html and "Worst tiles" not in bare


def test_cli_report(real_run, tmp_path):
    run, data = real_run
    out = tmp_path / "r.html"
    result = CliRunner().invoke(
        app, ["report", "--run", str(run), "--data", str(data), "--out", str(out), "--worst", "2"]
    )
    assert result.exit_code == 0, result.output
    assert out.exists() and "OOF score" in result.output
    out.unlink()
    result = CliRunner().invoke(app, ["report", "--run", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output  # the data folder saved in the run's config
    assert out.exists()


def test_data_folder_needed_without_config(tmp_path):
    truth, probs = constructed()
    run, _ = write_fake_run(tmp_path, truth, probs)
    with pytest.raises(SaltsegError, match="names no data folder"):
        analyse(run)


def test_run_without_oof(tmp_path):
    (tmp_path / "run").mkdir()
    make_layout(tmp_path / "data", n=3)
    with pytest.raises(SaltsegError, match="not a saltseg run folder"):
        analyse(tmp_path / "run", tmp_path / "data")
    ids = [p.stem for p in sorted((tmp_path / "data/train/images").glob("*.png"))]
    Run(tmp_path / "run").initialise(Config(), pd.DataFrame({"id": ids, "fold": [0, 1, 0]}))
    with pytest.raises(SaltsegError, match="no out-of-fold predictions"):
        analyse(tmp_path / "run", tmp_path / "data")
    result = CliRunner().invoke(
        app, ["report", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "data")]
    )
    assert result.exit_code == 2 and "error:" in result.output
    with pytest.raises(SaltsegError, match="does not exist"):
        analyse(tmp_path / "absent", tmp_path / "data")


def test_oof_ids_missing_from_data(tmp_path):
    truth, probs = constructed()
    run, data = write_fake_run(tmp_path, truth, probs, extra_ids=["ffffffffff"])
    with pytest.raises(SaltsegError, match="1 out-of-fold id.*'ffffffffff'"):
        write_report(run, data, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
