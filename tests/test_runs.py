"""The run folder's owner: what may be created, replaced or loaded, and what is refused.

Every refusal must leave the files that were there before untouched (checksums equal).
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from saltseg.checkpoints import load_model, read_checkpoint
from saltseg.cli import app
from saltseg.config import Config
from saltseg.errors import SaltsegError
from saltseg.inference.pipeline import predict_folder
from saltseg.runs import Run, read_oof
from saltseg.training.kfold import train_kfold
from tests.helpers import CONFIGS, TINY, checksums, make_layout, tiny_config


def copy_run(run, tmp_path, name="run"):
    """A copy of the shared run that a test may change."""
    return shutil.copytree(run, tmp_path / name)


def train_cli(*args):
    overrides = [arg for item in TINY for arg in ("--set", item)]
    return CliRunner().invoke(app, ["train", *overrides, *args, "--no-progress"])


# --- creating and replacing a run ---------------------------------------------------------------


def test_overwrite_refuses_a_folder_that_is_not_a_run(tiny_data, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("my notes")
    before = checksums(notes)
    for target in (notes, tiny_data):
        saved = checksums(target)
        result = train_cli("--config", str(CONFIGS / "demo.yaml"), "--data", str(tiny_data),
                           "--out", str(target), "--overwrite")  # fmt: skip
        assert result.exit_code == 2, result.output
        assert "holds no saltseg run" in result.output
        assert checksums(target) == saved
    assert checksums(notes) == before


def test_a_bad_setting_leaves_the_old_run_whole(tiny_run, tiny_data, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    before = checksums(run)
    bad = [
        ("--set", "loss.stages=[{terms: {dicee: 1}}]", "unknown loss 'dicee'"),
        ("--set", "trainer.accelerator=tpu", "bad trainer settings"),
        ("--set", "trainer.devices=0", "bad trainer settings"),
        ("--set", "model.encoder=no_such_net", "model"),
    ]
    for flag, value, message in bad:
        result = train_cli("--config", str(CONFIGS / "demo.yaml"), "--data", str(tiny_data),
                           "--out", str(run), "--overwrite", flag, value)  # fmt: skip
        assert result.exit_code == 2, result.output
        assert message in result.output, result.output
        assert checksums(run) == before


def test_bad_settings_write_nothing(tiny_data, tmp_path):
    out = tmp_path / "new" / "run"
    result = train_cli("--config", str(CONFIGS / "demo.yaml"), "--data", str(tiny_data),
                       "--out", str(out), "--set", "trainer.accelerator=gpu")  # fmt: skip
    assert result.exit_code == 2 and "error: bad trainer settings" in result.output
    assert not (tmp_path / "new").exists()


def test_overwrite_replaces_only_the_runs_own_files(tiny_run, tiny_data, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    (run / "notes.txt").write_text("kept")
    (run / "fold_0" / "mine.txt").write_text("kept too")
    stale = run / "fold_5"
    shutil.copytree(run / "fold_1", stale)  # a fold the new run does not have
    owned = Run(run).owned_entries()
    assert run / "notes.txt" not in owned and run / "fold_0" / "mine.txt" not in owned
    assert stale / "best.ckpt" in owned
    train_kfold(tiny_config(), run, data=tiny_data, overwrite=True, progress=False)
    assert (run / "notes.txt").read_text() == "kept"
    assert (run / "fold_0" / "mine.txt").read_text() == "kept too"
    assert not stale.exists()
    assert Run(run).folds() == [0, 1] and (run / "run.json").is_file()


def test_an_interrupted_overwrite_keeps_the_old_run(tiny_run, tiny_data, tmp_path, monkeypatch):
    run = copy_run(tiny_run, tmp_path)
    before = checksums(run)
    from saltseg.training import kfold

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(kfold, "train_fold", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_kfold(tiny_config(), run, data=tiny_data, overwrite=True, progress=False)
    assert checksums(run / ".replaced") == before  # every old file, unchanged, set aside
    monkeypatch.undo()
    train_kfold(tiny_config(), run, data=tiny_data, overwrite=True, progress=False)
    assert not (run / ".replaced").exists()


def test_output_paths_that_cannot_be_folders(tiny_data, tmp_path):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        result = train_cli("--config", str(CONFIGS / "demo.yaml"), "--data", str(tiny_data),
                           "--out", str(out))  # fmt: skip
        assert result.exit_code == 2 and "is a file" in result.output, result.output
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("kind", ["folder", "binary"])
def test_config_that_is_not_a_yaml_file(kind, tiny_data, tmp_path):
    config = tmp_path / "cfg"
    if kind == "folder":
        config.mkdir()
    else:
        config.write_bytes(bytes(range(256)) * 4)
    result = train_cli("--config", str(config), "--data", str(tiny_data),
                       "--out", str(tmp_path / "run"))  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_folds_file_with_only_id_and_fold(tiny_data, tmp_path):
    ids = sorted(p.stem for p in (tiny_data / "train" / "images").glob("*.png"))
    folds = tmp_path / "folds.csv"
    pd.DataFrame({"id": ids, "fold": np.arange(len(ids)) % 2}).to_csv(folds, index=False)
    config = tiny_config(f"data.folds_file={folds}")
    summary = train_kfold(config, tmp_path / "run", data=tiny_data, folds=[0], progress=False)
    assert summary["n_tiles"] == len(ids) // 2
    written = pd.read_csv(tmp_path / "run" / "folds.csv", dtype={"id": str})
    assert list(written.columns) == ["id", "fold"] and written["id"].tolist() == ids


# --- resuming -----------------------------------------------------------------------------------


def test_resume_refuses_a_changed_recipe_and_takes_new_hardware(tiny_run, tiny_data, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    before = checksums(run)
    with pytest.raises(SaltsegError, match=r"optim\.lr differs"):
        train_kfold(tiny_config("optim.lr=0.5"), run, data=tiny_data, resume=True)
    result = CliRunner().invoke(
        app, ["train", "--out", str(run), "--resume", "--set", "trainer.epochs=9"]
    )
    assert result.exit_code == 2 and "trainer.epochs differs" in result.output
    assert checksums(run) == before
    summary = train_kfold(
        tiny_config("trainer.devices=1"), run, data=tiny_data, resume=True, progress=False
    )
    assert summary["n_tiles"] == 16  # both folds were finished: nothing retrained
    assert checksums(run)["fold_0/best.ckpt"] == before["fold_0/best.ckpt"]


def test_resume_with_a_truncated_last_checkpoint(tiny_run, tiny_data, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    (run / "fold_1" / "score.json").unlink()  # fold 1 unfinished
    last = run / "fold_1" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(SaltsegError, match=r"last\.ckpt: not a readable checkpoint"):
        train_kfold(None, run, data=tiny_data, resume=True, progress=False)


def test_nothing_to_resume(tmp_path):
    with pytest.raises(SaltsegError, match="nothing to resume"):
        train_kfold(None, tmp_path / "absent", resume=True)


# --- loading ------------------------------------------------------------------------------------


class Payload:
    """An object that only full unpickling could rebuild."""

    def __reduce__(self):
        return (print, ("this code must never run",))


def test_checkpoints_load_with_weights_only(tiny_run, tmp_path, capsys):
    model, config, meta = load_model(tiny_run / "fold_0" / "best.ckpt")
    assert isinstance(config, Config) and meta["epoch"] == 0
    evil = tmp_path / "evil.ckpt"
    ckpt = torch.load(tiny_run / "fold_0" / "best.ckpt", weights_only=True)
    ckpt["extra"] = Payload()
    torch.save(ckpt, evil)
    with pytest.raises(SaltsegError, match="weights_only=True"):
        load_model(evil)
    assert "must never run" not in capsys.readouterr().out
    no_weights = tmp_path / "no_weights.ckpt"
    torch.save({k: v for k, v in ckpt.items() if k not in ("state_dict", "extra")}, no_weights)
    with pytest.raises(SaltsegError, match="no state_dict"):
        read_checkpoint(no_weights)


def test_damaged_run_files_give_one_line_errors(tiny_run, tiny_data, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    oof = run / "fold_0" / "oof.npz"
    oof.write_bytes(b"not an npz")
    with pytest.raises(SaltsegError, match=r"fold_0/oof\.npz: not a readable out-of-fold file"):
        Run(run).oof()
    with pytest.raises(SaltsegError, match="oof.npz"):
        read_oof(oof)
    onnx = copy_run(tiny_run, tmp_path, "onnx-run")
    from saltseg.inference.onnx import export_run

    path = export_run(onnx)[0]
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(SaltsegError, match="not a readable ONNX model"):
        predict_folder([onnx], tiny_data, tmp_path / "p", backend="onnx", progress=False)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"threshold": 7}, r"threshold must be a number in \(0, 1\)"),
        ({"threshold": "0.5"}, "threshold must be a number"),
        ({"min_area": -1}, "min_area must be at least 0"),
        ({"min_area": 2.5}, "min_area must be a whole number"),
        ({"cls_threshold": 1.5}, "cls_threshold"),
        ({"empty_constant": "yes"}, "empty_constant"),
        ({"thresold": 0.5}, "unknown key 'thresold'"),
    ],
)
def test_bad_postprocess_files_are_refused(settings, message, tiny_run, tiny_data, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    (run / "postprocess.json").write_text(json.dumps(settings))
    with pytest.raises(SaltsegError, match=message):
        predict_folder([run], tiny_data, tmp_path / "p", progress=False)
    assert not (tmp_path / "p").exists()


# --- prediction output folders ------------------------------------------------------------------


def test_predict_replaces_only_its_own_earlier_result(tiny_run, tiny_data, tmp_path):
    out = tmp_path / "p"
    predict_folder([tiny_run], tiny_data, out, masks=True, save_probs=True, progress=False)
    first = checksums(out)
    assert {"submission.csv", "probs.npz", "predict.json"} <= set(first)
    with pytest.raises(SaltsegError, match="--overwrite"):
        predict_folder([tiny_run], tiny_data, out, progress=False)
    assert checksums(out) == first
    (out / "mine.txt").write_text("kept")
    predict_folder([tiny_run], tiny_data, out, overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt", "predict.json", "submission.csv"]
    assert json.loads((out / "predict.json").read_text())["outputs"] == ["submission.csv"]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "submission.csv").write_text("id,rle_mask\nmine,1 1\n")
    with pytest.raises(SaltsegError, match="holds no predict.json"):
        predict_folder([tiny_run], tiny_data, notes, overwrite=True, progress=False)
    assert (notes / "submission.csv").read_text() == "id,rle_mask\nmine,1 1\n"


def test_interrupted_predict_keeps_the_earlier_result(tiny_run, tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "p"
    predict_folder([tiny_run], tiny_data, out, masks=True, progress=False, chunk_size=4)
    before = checksums(out)
    from saltseg.inference import submission

    calls = []
    original = submission.SubmissionWriter.write

    def interrupt(self, ids, masks):
        calls.append(len(ids))
        if len(calls) == 2:
            raise KeyboardInterrupt
        original(self, ids, masks)

    monkeypatch.setattr(submission.SubmissionWriter, "write", interrupt)
    with pytest.raises(KeyboardInterrupt):
        predict_folder([tiny_run], tiny_data, out, overwrite=True, progress=False, chunk_size=4)
    assert checksums(out) == before  # no staging folder left, earlier files as they were


def test_ids_with_commas_are_quoted(tiny_run, tmp_path):
    folder = tmp_path / "tiles"
    folder.mkdir()
    make_layout(tmp_path / "src", n=1, n_test=2)
    for i, png in enumerate(sorted((tmp_path / "src" / "test" / "images").glob("*.png"))):
        shutil.copy(png, folder / f"line {i},trace 7.png")
    predict_folder([tiny_run], folder, tmp_path / "p", progress=False)
    frame = pd.read_csv(tmp_path / "p" / "submission.csv", keep_default_na=False)
    assert frame["id"].tolist() == ["line 0,trace 7", "line 1,trace 7"]


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "data.txt").write_text("precious")
    before = checksums(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2 and "holds no earlier demo" in result.output
    assert checksums(tmp_path) == before


def test_export_replaces_only_saltseg_exports(tiny_run, tmp_path):
    from saltseg.inference.onnx import export_run

    out = tmp_path / "onnx"
    out.mkdir()
    (out / "fold_0.onnx").write_bytes(b"someone else's model")
    with pytest.raises(SaltsegError, match="not a saltseg export"):
        export_run(tiny_run, out)
    assert (out / "fold_0.onnx").read_bytes() == b"someone else's model"
    assert not (out / "fold_1.onnx").exists()  # nothing written before the check
    (out / "fold_0.onnx").unlink()
    first = export_run(tiny_run, out)
    assert export_run(tiny_run, out) == first  # its own exports are replaced
