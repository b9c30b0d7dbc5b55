"""wrk as the saturation driver (skipped where Debian's wrk is not installed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from antispam.bench.load import LoadSpec
from antispam.bench.wrk import lua_script, run_wrk
from antispam.errors import UserError
from tests.helpers.tiny_app import TEXTS, ServerThread


def test_script_is_ascii_and_holds_every_request() -> None:
    spec = LoadSpec(url="http://127.0.0.1:9", texts=TEXTS + ["]]==]"], kind="post", batch=2)
    script = lua_script(spec)
    script.encode("ascii")  # no non-ASCII byte reaches wrk
    assert script.count('"texts"') == len(spec.texts) // 2
    assert "function done" in script and "function request" in script
    get = lua_script(LoadSpec(url="http://127.0.0.1:9", texts=TEXTS))
    assert "/predict?text=%E4%BD%A0%E5%A5%BD" in get


def test_fixed_rate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        run_wrk(LoadSpec(url="http://127.0.0.1:9", texts=TEXTS, mode="rate", rate=10), tmp_path)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_wrk_saturation_against_a_tiny_app(tmp_path: Path) -> None:
    with ServerThread() as server:
        spec = LoadSpec(url=server.url, texts=TEXTS, kind="post", batch=3, duration=1.0, connections=4)
        result = run_wrk(spec, tmp_path)
    assert result.errors == 0 and result.ok > 50
    assert result.messages_ok == 3 * result.ok
    assert 0 < result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["max"]
