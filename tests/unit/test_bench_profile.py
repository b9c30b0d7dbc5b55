"""Grouping py-spy stacks into components."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from antispam.bench import profile

LOOP = "_run_module_as_main (<frozen runpy>:198);run (asyncio/runners.py:190);Handle._run (asyncio/events.py:80)"
JIEBA = f"{LOOP};Scorer.score (antispam/app.py:97);Segmenter.segment (antispam/text.py:84);" \
        "Tokenizer.cut (jieba/__init__.py:325);match (re/__init__.py:166)"
MODEL = "Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83);" \
        "LocalBackend._score (antispam/backends/local.py:197);" \
        "__call__ (tensorflow/python/eager/polymorphic_function/concrete_function.py:1242)"
IDLE = f"{LOOP};BaseEventLoop._run_once (asyncio/base_events.py:1922);EpollSelector.select (selectors.py:468)"
HTTP = f"{LOOP};HTTP1Connection._read_message (tornado/http1connection.py:200)"


def test_innermost_known_frame_wins() -> None:
    assert profile.classify(JIEBA.split(";")) == "jieba (segmentation)"  # re called by jieba
    assert profile.classify(MODEL.split(";")) == "TensorFlow (model call)"
    assert profile.classify(IDLE.split(";")) == profile.IDLE
    assert profile.classify(HTTP.split(";")) == "Tornado (HTTP parsing, handlers, writes)"
    assert profile.classify(["main (somewhere/else.py:1)"]) == profile.OTHER


def test_components_are_shares_of_all_samples(tmp_path: Path) -> None:
    path = tmp_path / "raw.1.txt"
    path.write_text(f"{JIEBA} 6\n{MODEL} 3\n{HTTP} 1\nnot a stack line\n")
    shares = profile.components([path])
    assert shares == {"jieba (segmentation)": 0.6, "TensorFlow (model call)": 0.3,
                      "Tornado (HTTP parsing, handlers, writes)": 0.1}
    assert list(shares)[0] == "jieba (segmentation)"  # largest first
    text = profile.format_components("x", shares)
    assert "60.0%  jieba" in text
    assert profile.components([]) == {}


@pytest.mark.skipif(profile.find_pyspy() is None, reason="py-spy is not installed (pip install py-spy)")
def test_pyspy_samples_a_busy_process(tmp_path: Path) -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import json, time\nend = time.time() + 4\n"
                             "while time.time() < end: json.dumps({'a': list(range(100))})"])
    try:
        time.sleep(0.3)
        files = profile.finish(profile.start([busy.pid], 1, tmp_path / "p"))
    finally:
        busy.kill()
        busy.wait()
    if not files:
        pytest.skip("py-spy could not attach here (ptrace not permitted)")
    assert profile.components(files).get("JSON", 0) > 0.3
