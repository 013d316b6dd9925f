import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from saltseg.cli import app
from saltseg.rle import rle_encode
from tests.helpers import make_layout

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("evaluate", "folds", "version"):
        assert name in result.output


def test_evaluate_perfect_and_imperfect(tmp_path):
    ids, _, masks = make_layout(tmp_path)
    result = runner.invoke(
        app, ["evaluate", "--truth", str(tmp_path), "--pred", str(tmp_path / "train.csv"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["score"] == 1.0
    # Predict everything empty: only the one empty truth tile scores.
    sub = pd.DataFrame({"id": ids, "rle_mask": ""})
    sub.to_csv(tmp_path / "sub.csv", index=False)
    per_image = tmp_path / "per_image.csv"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--truth",
            str(tmp_path),
            "--pred",
            str(tmp_path / "sub.csv"),
            "--per-image",
            str(per_image),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["score"] == 1 / len(ids)
    frame = pd.read_csv(per_image)
    assert len(frame) == len(ids) and frame["score"].sum() == 1


def test_evaluate_id_errors(tmp_path):
    ids, _, masks = make_layout(tmp_path)
    rows = [(i, rle_encode(m)) for i, m in zip(ids[1:], masks[1:], strict=True)]
    pd.DataFrame(rows, columns=["id", "rle_mask"]).to_csv(tmp_path / "short.csv", index=False)
    result = runner.invoke(
        app, ["evaluate", "--truth", str(tmp_path), "--pred", str(tmp_path / "short.csv")]
    )
    assert result.exit_code == 2
    assert "no prediction for 1 id" in result.output
    rows.append(("ffffffffff", ""))
    rows.append((ids[0], ""))
    pd.DataFrame(rows, columns=["id", "rle_mask"]).to_csv(tmp_path / "extra.csv", index=False)
    result = runner.invoke(
        app, ["evaluate", "--truth", str(tmp_path), "--pred", str(tmp_path / "extra.csv")]
    )
    assert result.exit_code == 2 and "not in the truth" in result.output


def test_folds_command(tmp_path):
    make_layout(tmp_path, n=12)
    result = runner.invoke(app, ["folds", str(tmp_path), "--k", "3"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "folds.csv")
    assert sorted(frame["fold"].unique()) == [0, 1, 2]
    assert np.bincount(frame["fold"]).tolist() == [4, 4, 4]
    result = runner.invoke(app, ["folds", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "missing folder" in result.output
