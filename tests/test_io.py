"""Atomic writes: the target is the old file or the complete new one, no temp file left over."""

import json
import os

import numpy as np
import pytest

from saltseg.io import atomic_path, write_bytes, write_json, write_text


def test_temp_name_is_hidden_in_same_folder_and_keeps_suffix(tmp_path):
    target = tmp_path / "oof.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name == f".oof.npz.{os.getpid()}.tmp.npz"
        np.savez(tmp, a=np.arange(3))  # would append .npz if the suffix were not kept
    assert np.array_equal(np.load(target)["a"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["oof.npz"]


def test_name_without_suffix(tmp_path):
    with atomic_path(tmp_path / "README") as tmp:
        assert tmp.name == f".README.{os.getpid()}.tmp"
        tmp.write_text("x")
    assert (tmp_path / "README").read_text() == "x"


def test_exception_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_exception_before_writing_anything(tmp_path):
    with pytest.raises(KeyError), atomic_path(tmp_path / "b.txt"):
        raise KeyError("x")
    assert list(tmp_path.iterdir()) == []


def test_write_helpers(tmp_path):
    write_json({"a": [1, 2]}, tmp_path / "d.json")
    text = (tmp_path / "d.json").read_text()
    assert text == json.dumps({"a": [1, 2]}, indent=2) + "\n"
    write_text("héllo", str(tmp_path / "t.txt"))
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    write_bytes(b"\x00\x01", tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    write_text("new", tmp_path / "t.txt")  # replaces an existing file
    assert (tmp_path / "t.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "d.json", "t.txt"]
