"""Atomic writes for files and folders that other processes read.

Model versions, word vectors, the split manifest and reports are read by the service, TF
Serving or the retrain job while they may be being rewritten; a reader must see the old content
or the new one, never a part. The recipe is always the same: write beside the target on the same
filesystem, fsync, then ``os.replace``/``os.rename``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

READABLE_MODE = 0o644


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as fh:
        try:
            # mkstemp creates 0600 files; these are read by other accounts (TF Serving, the service).
            os.fchmod(fh.fileno(), READABLE_MODE)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        except BaseException:
            os.unlink(fh.name)
            raise
    os.replace(fh.name, path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """Flush every file below ``root`` (and the folders) before it is renamed into view."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
