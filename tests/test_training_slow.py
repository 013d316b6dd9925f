"""Multi-process training and recovery from a kill: real processes, so marked slow."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from saltseg.checkpoints import read_checkpoint
from tests.helpers import make_layout, oof_score

pytestmark = pytest.mark.slow
DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
SMALL = [
    "--set", "data.k=2", "--set", "data.batch_size=4", "--set", "model.encoder=resnet18",
    "--set", "model.decoder_width=0.25", "--no-progress",
]  # fmt: skip


def _saltseg(*args: str) -> list[str]:
    return [sys.executable, "-m", "saltseg", *args]


def test_ddp_on_cpu_with_two_processes(tmp_path):
    make_layout(tmp_path / "data", n=24, n_test=2)
    out = tmp_path / "run"
    cmd = _saltseg(
        "train", "--config", str(DEMO), "--data", str(tmp_path / "data"), "--out", str(out),
        "--folds", "0", "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu",
        "--set", "trainer.epochs=2", *SMALL,
    )  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OOF score" in result.stdout
    assert "litlogger" not in result.stdout + result.stderr  # quiet runs
    assert "GPU available" not in result.stdout + result.stderr
    score = json.loads((out / "fold_0" / "score.json").read_text())
    assert score["n_val"] == 12
    assert score["oof_score"] == pytest.approx(oof_score(out, tmp_path / "data"))
    assert read_checkpoint(out / "fold_0" / "last.ckpt")["epoch"] == 1


def test_sigkill_mid_epoch_then_resume(tmp_path):
    make_layout(tmp_path / "data", n=40, n_test=2)
    out = tmp_path / "run"
    epochs = 4
    cmd = _saltseg(
        "train", "--config", str(DEMO), "--data", str(tmp_path / "data"), "--out", str(out),
        "--folds", "0", "--set", f"trainer.epochs={epochs}", *SMALL,
    )  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "fold_0" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert last.exists() and proc.poll() is None, "training ended before the first checkpoint"
    time.sleep(1.5)  # into the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_checkpoint(last)["epoch"]  # a complete file, never a truncated one
    assert killed_at < epochs - 1
    assert not (out / "fold_0" / "score.json").exists()

    result = subprocess.run(
        _saltseg("train", "--out", str(out), "--resume", "--folds", "0", "--no-progress"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_checkpoint(last)["epoch"] == epochs - 1
    metrics = pd.read_csv(out / "fold_0" / "metrics.csv")
    assert sorted(metrics["epoch"].unique()) == list(range(epochs))
    assert metrics["val_metric"].notna().sum() == epochs
    assert (out / "fold_0" / "score.json").exists()
