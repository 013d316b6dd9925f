"""Self-training: pseudo-labelled tiles train in every fold and are never validated on."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import saltseg.training.fold as fold_module
from saltseg.cli import app
from saltseg.data.datamodule import FoldDataModule
from saltseg.data.tgs import TileSet, load_dataset
from saltseg.errors import SaltsegError
from saltseg.report import write_report
from saltseg.runs import Run
from saltseg.selftrain import scaled_epochs, self_train
from tests.helpers import checksums


def _linked_copy(run, dst):
    """The run with every file a symlink to the original (removing one leaves it intact)."""
    shutil.copytree(run, dst, copy_function=os.symlink)
    return dst


def test_extra_training_tiles_never_validate(tiny_data, tiny_run):
    tiles = load_dataset(tiny_data, "train")
    config = Run(tiny_run).config()
    extra = TileSet(["p1", "p2"], tiles.images[:2], tiles.masks[:2], tiles.depths[:2])
    module = FoldDataModule.from_config(tiles, np.arange(5), config, 0, extra_train=extra)
    assert module.train_tiles.ids[-2:] == ["p1", "p2"] and len(module.train_tiles) == 11 + 2
    assert module.val_tiles.ids == tiles.ids[:5]
    clash = TileSet(tiles.ids[:1], tiles.images[:1], tiles.masks[:1], tiles.depths[:1])
    with pytest.raises(SaltsegError, match="in two of the tile sets"):
        FoldDataModule.from_config(tiles, np.arange(0), config, 0, extra_train=clash)


def test_a_round_keeps_the_folds_and_never_validates_pseudo_tiles(
    tiny_data, tiny_run, tmp_path, monkeypatch
):
    torch.set_num_threads(1)
    seen = []
    original = fold_module.FoldDataModule.from_config

    def spy(*args, **kwargs):
        module = original(*args, **kwargs)
        seen.append((list(module.train_tiles.ids), list(module.val_tiles.ids)))
        return module

    monkeypatch.setattr(fold_module.FoldDataModule, "from_config", spy)
    before = checksums(tiny_run)
    out = tmp_path / "self"
    lines = []
    summary = self_train(
        tiny_run,
        tiny_data,
        1,
        out,
        max_uncertain=1.0,
        share=None,
        progress=False,
        echo=lines.append,
        overrides=["trainer.seed=7"],
        same_steps=True,
    )
    assert checksums(tiny_run) == before
    assert lines[0].startswith("round 1: 10 of 10 unlabelled tiles kept")
    pseudo = load_dataset(out / "round_1" / "pseudo", "train")
    labelled = load_dataset(tiny_data, "train")
    assert len(pseudo) == 10 and not set(pseudo.ids) & set(labelled.ids)

    assert len(seen) == 2
    for train_ids, val_ids in seen:
        assert set(pseudo.ids) <= set(train_ids)
        assert not set(pseudo.ids) & set(val_ids)

    run = Run.open(out / "round_1" / "run")
    source = Run(tiny_run)
    ours = run.folds_frame()[["id", "fold"]].sort_values("id").to_numpy()
    theirs = source.folds_frame()[["id", "fold"]].sort_values("id").to_numpy()
    assert np.array_equal(ours, theirs)
    assert run.oof()["ids"] == sorted(labelled.ids)
    assert run.postprocess() is not None
    assert run.config().data.pseudo == [(out / "round_1" / "pseudo").resolve()]
    assert run.config().trainer.seed == 7 and source.config().trainer.seed != 7
    epochs = scaled_epochs(source.config().trainer.epochs, len(labelled), 10)
    assert run.config().trainer.epochs == epochs == summary["finished"][0]["epochs"]
    info = run.info()["self_training"]
    assert info["round"] == 1 and info["pseudo_tiles"] == 10
    assert info["source_run"] == str(tiny_run.resolve())
    assert run.info()["pseudo_tiles"] == 10 and run.info()["init"] == {"kind": "random"}
    manifest = json.loads((out / "self-train.json").read_text())
    assert manifest == summary and manifest["finished"][0]["pseudo_tiles"] == 10
    html = write_report(run.root, None, tmp_path / "report.html", worst=0).read_text()
    assert "Initial weights: random" in html
    assert f"Self-training round 1 from run {tiny_run.resolve()}: 10 pseudo-labelled" in html


def test_a_later_round_learns_from_the_round_before(tiny_data, tiny_run, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "self"
    summary = self_train(
        tiny_run,
        tiny_data,
        2,
        out,
        max_uncertain=1.0,
        share=None,
        progress=False,
        overrides=["trainer.epochs=3"],
        same_steps=True,
    )
    assert [r["round"] for r in summary["finished"]] == [1, 2]
    second = Run.open(out / "round_2" / "run")
    info = second.info()["self_training"]
    assert info["round"] == 2 and info["source_run"] == str(tiny_run.resolve())
    assert info["previous_run"] == str((out / "round_1" / "run").resolve())
    predicted = json.loads((out / "round_2" / "predict" / "predict.json").read_text())
    # round 2's pseudo-labels come from round 1's fold models and post-processing
    assert {Path(m["run"]) for m in predicted["members"]} == {out / "round_1" / "run"}
    assert Path(predicted["postprocess_from"]).parent == out / "round_1" / "run"
    assert second.config().data.pseudo == [(out / "round_2" / "pseudo").resolve()]
    # every round scales the source recipe's epochs, not the round before's
    assert summary["finished"][1]["epochs"] == scaled_epochs(3, 16, 10) == 2
    assert second.config().trainer.epochs == 2
    assert Run(out / "round_1" / "run").folds_frame()["fold"].tolist() == (
        second.folds_frame()["fold"].tolist()
    )


@pytest.mark.slow
def test_overwrite_replaces_only_the_rounds(tiny_data, tiny_run, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "self"
    self_train(tiny_run, tiny_data, 1, out, max_uncertain=1.0, share=None, progress=False)
    with pytest.raises(SaltsegError, match="pass --overwrite"):
        self_train(tiny_run, tiny_data, 1, out, max_uncertain=1.0, share=None, progress=False)
    (out / "round_1" / "run" / "notes.txt").write_text("mine")
    self_train(
        tiny_run, tiny_data, 1, out, max_uncertain=1.0, share=None, overwrite=True, progress=False
    )
    assert (out / "round_1" / "run" / "notes.txt").read_text() == "mine"
    labelled = load_dataset(tiny_data, "train")
    assert Run(out / "round_1" / "run").oof()["ids"] == sorted(labelled.ids)


def test_bad_inputs_are_one_line_errors_and_write_nothing(tiny_data, tiny_run, tmp_path):
    no_oof = _linked_copy(tiny_run, tmp_path / "no_oof")
    for path in no_oof.glob("fold_*/oof.npz"):
        path.unlink()
    no_pp = _linked_copy(tiny_run, tmp_path / "no_pp")
    (no_pp / "postprocess.json").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    out = tmp_path / "out"
    cases = [
        (["--run", no_oof, "--unlabelled", tiny_data], "no out-of-fold predictions"),
        (["--run", no_pp, "--unlabelled", tiny_data], "no postprocess.json: tune it first"),
        (["--run", tiny_run, "--unlabelled", empty], "no unlabelled tiles: no PNG images"),
        (["--run", tiny_run, "--unlabelled", tiny_data, "--rounds", "0"], "rounds must be"),
        (["--run", tiny_run, "--unlabelled", tiny_data, "--band", "0.8,0.2"], "band must"),
        (["--run", tiny_run, "--unlabelled", tiny_data, "--share", "1.5"], "share must"),
        (["--run", tiny_data, "--unlabelled", tiny_data], "is not a saltseg run folder"),
        (
            ["--run", tiny_run, "--unlabelled", tiny_data, "--set", "trainer.epochs=0"],
            "bad config: trainer.epochs",
        ),
    ]
    runner = CliRunner()
    for args, message in cases:
        result = runner.invoke(app, ["self-train", *map(str, args), "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()
    result = runner.invoke(
        app,
        [
            "self-train",
            "--run",
            str(tiny_run),
            "--unlabelled",
            str(tiny_data),
            "--out",
            str(foreign),
        ],
    )
    assert result.exit_code == 2 and "holds no self-train.json" in result.output
    assert sorted(p.name for p in foreign.iterdir()) == ["keep.txt"]
    train_images = tiny_data / "train" / "images"
    with pytest.raises(SaltsegError, match="unlabelled tile.* are labelled tiles too"):
        self_train(tiny_run, train_images, 1, out, progress=False)
    inside = _linked_copy(tiny_run, out / "round_1" / "run")
    with pytest.raises(SaltsegError, match="lies inside --out"):
        self_train(inside, tiny_data, 1, out, progress=False)


def test_same_steps_scales_the_epochs():
    assert scaled_epochs(20, 1000, 1000) == 10
    assert scaled_epochs(4, 1000, 3000) == 1
    assert scaled_epochs(1, 10, 1000) == 1  # at least one epoch
    assert scaled_epochs(16, 100, 0) == 16
