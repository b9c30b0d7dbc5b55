"""Progress: a bar only on a terminal; plain periodic log lines in log files."""

from __future__ import annotations

import logging

import pytest

from antispam import progress


def test_without_a_terminal_progress_is_logged_every_tenth(monkeypatch, caplog) -> None:
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False)
    with caplog.at_level(logging.INFO, logger="antispam.progress"):
        bar = progress.progress_bar(100, "cnn epoch 1/3", "batch")
        assert isinstance(bar, progress.LogProgress)
        for _ in range(100):
            bar.update(1)
        bar.set_postfix(loss="0.1234")
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert 9 <= len(lines) <= 11  # one line per 10%, and the last one
    assert all("\r" not in line for line in lines)
    assert lines[-1] == "cnn epoch 1/3: 100/100 batch (loss=0.1234)"


def test_disabled_progress_says_nothing(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="antispam.progress"):
        bar = progress.progress_bar(10, "x", "step", enabled=False)
        for _ in range(10):
            bar.update(1)
        bar.close()
    assert not caplog.records


def test_a_terminal_gets_a_tqdm_bar(monkeypatch) -> None:
    tqdm = pytest.importorskip("tqdm")
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True)
    bar = progress.progress_bar(3, "x", "step")
    try:
        assert isinstance(bar, tqdm.std.tqdm)
    finally:
        bar.close()
