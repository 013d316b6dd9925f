import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from saltseg.cli import app
from tests.helpers import make_layout

DEMO = str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
SMALL = ["--set", "data.k=2", "--set", "data.batch_size=4", "--set", "model.decoder_width=0.25"]
runner = CliRunner()


def test_lr_find_writes_plot_and_suggestion(tmp_path):
    make_layout(tmp_path / "data", n=16, n_test=1)
    out = tmp_path / "lr.png"
    args = ["lr-find", "--config", DEMO, "--data", str(tmp_path / "data"), "--out", str(out)]
    result = runner.invoke(app, [*args, "--steps", "12", "--stop-factor", "0", *SMALL])
    assert result.exit_code == 0, result.output
    assert "suggested lr" in result.output
    suggestion = float(result.output.split("suggested lr ")[1].split(";")[0])
    assert 1e-6 <= suggestion <= 1.0
    assert Image.open(out).size[0] > 100


def test_train_command_and_its_errors(tmp_path):
    make_layout(tmp_path / "data", n=12, n_test=1)
    base = ["train", "--config", DEMO, "--data", str(tmp_path / "data"), "--no-progress", *SMALL]
    out = tmp_path / "run"
    result = runner.invoke(app, [*base, "--out", str(out), "--set", "trainer.epochs=1"])
    assert result.exit_code == 0, result.output
    assert "OOF score" in result.output
    assert json.loads((out / "oof_score.json").read_text())["n_tiles"] == 12
    assert "tuned OOF score" in result.output and (out / "postprocess.json").exists()
    assert "only" not in result.output
    one = runner.invoke(
        app, [*base, "--out", str(tmp_path / "one"), "--folds", "0", "--set", "trainer.epochs=1"]
    )
    assert one.exit_code == 0, one.output
    assert "folds 0 only: train the others with --resume" in one.output
    again = runner.invoke(app, [*base, "--out", str(out)])
    assert again.exit_code == 2 and "already holds a run" in again.output
    typo = runner.invoke(app, [*base, "--out", str(tmp_path / "x"), "--set", "optim.lrr=1"])
    assert typo.exit_code == 2 and "unknown key 'optim.lrr'" in typo.output
    folds = runner.invoke(app, [*base, "--out", str(tmp_path / "y"), "--folds", "0,7"])
    assert folds.exit_code == 2 and "fold 7 out of range" in folds.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_steepest_descent_finds_the_fastest_fall():
    import numpy as np

    from saltseg.training.lr_finder import steepest_descent

    lrs = np.logspace(-6, 0, 61)
    x = np.log10(lrs)
    losses = 1.0 - 0.5 * np.tanh(2 * (x + 3))  # falls fastest at lr = 1e-3
    losses[-5:] = [2, 3, 4, 5, 6]  # divergence at the end
    assert steepest_descent(lrs.tolist(), losses.tolist()) == lrs[30]
