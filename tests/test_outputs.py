"""Output folders: what may be replaced, and a publish killed at any point in it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from saltseg import outputs
from saltseg.errors import SaltsegError
from saltseg.outputs import OutputFolder

MANIFEST = "predict.json"


class Killed(BaseException):
    """Stands for the process being killed (nothing catches it)."""


def contents(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included) with its text."""
    return {
        str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def publish(folder: Path, files: dict[str, str], overwrite: bool = True, **kw) -> None:
    out = OutputFolder(folder, MANIFEST, overwrite=overwrite, **kw)
    staging = out.stage()
    for name, text in files.items():
        if name.endswith("/"):
            (staging / name).mkdir()
            (staging / name / "part.txt").write_text(text)
        else:
            (staging / name).write_text(text)
    out.publish({"run": text})


OLD = {"submission.csv": "old", "probs/": "old", "only-old.txt": "old"}
NEW = {"submission.csv": "new", "probs/": "new", "only-new.txt": "new"}


def expected_new(folder: Path) -> dict[str, str]:
    publish(folder, NEW, overwrite=False)
    return contents(folder)


def test_publish_replaces_only_the_earlier_result(tmp_path):
    out = tmp_path / "out"
    publish(out, OLD, overwrite=False)
    (out / "notes.txt").write_text("user")  # not listed: refused without names
    with pytest.raises(SaltsegError, match="not written by"):
        publish(out, NEW, names=["submission.csv", "notes.txt"])
    publish(out, NEW, names=["submission.csv", "probs", "only-new.txt"])
    files = contents(out)
    assert files["notes.txt"] == "user"
    assert files["submission.csv"] == "new" and files["probs/part.txt"] == "new"
    assert "only-old.txt" not in files
    manifest = json.loads(files[MANIFEST])
    assert manifest["outputs"] == ["only-new.txt", "probs", "submission.csv"]
    assert not [name for name in files if name.startswith(".")]  # no journal, no staging


@pytest.mark.parametrize("kill_at", range(4))  # 3 outputs, then the manifest
def test_a_publish_killed_at_any_move_is_completed_by_the_next_command(
    tmp_path, monkeypatch, kill_at
):
    want = expected_new(tmp_path / "reference")
    out = tmp_path / "out"
    publish(out, OLD, overwrite=False)
    real_replace, moves = os.replace, []

    def replace(src, dst):
        if ".staging" in str(src) and ".tmp" not in Path(src).name:  # out of staging
            if len(moves) == kill_at:
                raise Killed
            moves.append(src)
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", replace)
    with pytest.raises(Killed):
        publish(out, NEW)
    monkeypatch.setattr(outputs.os, "replace", real_replace)
    assert (out / f".{MANIFEST}.publish.json").is_file()
    # the next command on the folder finishes the publish first, then applies its own checks
    with pytest.raises(SaltsegError, match="earlier result"):
        OutputFolder(out, MANIFEST, overwrite=False)
    assert contents(out) == want


def test_a_publish_killed_while_removing_the_old_files_is_completed(tmp_path, monkeypatch):
    want = expected_new(tmp_path / "reference")
    out = tmp_path / "out"
    publish(out, OLD, overwrite=False)
    real_remove = outputs.remove_entry

    def remove(entry):
        raise Killed

    monkeypatch.setattr(outputs, "remove_entry", remove)
    with pytest.raises(Killed):
        publish(out, NEW)
    monkeypatch.setattr(outputs, "remove_entry", real_remove)
    OutputFolder(out, MANIFEST, overwrite=True)
    assert contents(out) == want


def test_a_command_killed_before_publishing_leaves_the_earlier_result(tmp_path, monkeypatch):
    out = tmp_path / "out"
    publish(out, OLD, overwrite=False)
    before = contents(out)
    real_write = outputs.write_json

    def write_json(data, path):
        if Path(path).name.endswith(".publish.json"):
            raise Killed
        real_write(data, path)

    monkeypatch.setattr(outputs, "write_json", write_json)
    with pytest.raises(Killed):
        publish(out, NEW)
    monkeypatch.setattr(outputs, "write_json", real_write)
    OutputFolder(out, MANIFEST, overwrite=True).stage()  # drops the staging leftover
    after = {k: v for k, v in contents(out).items() if ".staging" not in k}
    assert after == before


def test_a_file_that_appears_meanwhile_stops_the_publish_before_any_removal(tmp_path):
    out = tmp_path / "out"
    publish(out, OLD, overwrite=False)
    folder = OutputFolder(out, MANIFEST, overwrite=True)
    staging = folder.stage()
    (staging / "only-new.txt").write_text("new")
    (out / "only-new.txt").write_text("user")
    with pytest.raises(SaltsegError, match="appeared meanwhile and was not written by saltseg"):
        folder.publish({})
    files = contents(out)
    assert files["only-new.txt"] == "user" and files["only-old.txt"] == "old"
    assert not (out / f".{MANIFEST}.publish.json").exists()


@pytest.mark.parametrize(
    "journal",
    [
        "not json",
        json.dumps({"staging": ".x.1.staging", "outputs": ["../escape"], "previous": []}),
        json.dumps({"staging": "../elsewhere", "outputs": [], "previous": []}),
        json.dumps(["a", "list"]),
    ],
)
def test_a_bad_journal_is_refused_and_nothing_moves(tmp_path, journal):
    out = tmp_path / "out"
    publish(out, OLD, overwrite=False)
    (out / f".{MANIFEST}.publish.json").write_text(journal)
    before = contents(out)
    with pytest.raises(SaltsegError, match="unreadable publish journal"):
        OutputFolder(out, MANIFEST, overwrite=True)
    assert contents(out) == before


def test_a_recovery_never_replaces_a_file_that_appeared_after_the_kill(tmp_path, monkeypatch):
    out = tmp_path / "out"
    publish(out, OLD, overwrite=False)
    real_replace = os.replace

    def replace(src, dst):
        if ".staging" in str(src) and ".tmp" not in Path(src).name:
            raise Killed  # killed before the first move
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", replace)
    with pytest.raises(Killed):
        publish(out, NEW)
    monkeypatch.setattr(outputs.os, "replace", real_replace)
    (out / "only-new.txt").write_text("user")  # a name of the new result, taken meanwhile
    with pytest.raises(SaltsegError, match="only-new.txt appeared meanwhile"):
        OutputFolder(out, MANIFEST, overwrite=True)
    assert (out / "only-new.txt").read_text() == "user"
    (out / "only-new.txt").unlink()  # the user moves it away: the next command finishes
    OutputFolder(out, MANIFEST, overwrite=True)
    assert (out / "only-new.txt").read_text() == "new"
    assert json.loads((out / MANIFEST).read_text())["outputs"] == sorted(
        ["only-new.txt", "probs", "submission.csv"]
    )
