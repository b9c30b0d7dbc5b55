import json
import os

import pytest

from antispam.atomic import atomic_write_bytes, atomic_write_json


def test_write_replaces_whole_file(tmp_path) -> None:
    target = tmp_path / "f.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"b": "二"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"b": "二"}
    assert os.listdir(tmp_path) == ["f.json"]


def test_failed_write_leaves_old_content(tmp_path, monkeypatch) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]
