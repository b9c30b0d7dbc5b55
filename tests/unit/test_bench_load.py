"""The load generator against a tiny Tornado app on loopback (no model, no TensorFlow)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from antispam.bench.load import LoadSpec, build_requests, loopback_address, run_in_subprocess, run_load
from antispam.errors import UserError
from tests.helpers.timing import within
from tests.helpers.tiny_app import TEXTS, ServerThread


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread() as s:
        yield s


def test_saturation_counts_every_answer(server: ServerThread) -> None:
    spec = LoadSpec(url=server.url, texts=TEXTS, mode="saturation", duration=0.6, connections=4)
    result = asyncio.run(run_load(spec))
    assert result.errors == 0 and result.ok == result.requests > 20
    assert result.requests_per_s == pytest.approx(result.ok / result.window_s)
    assert result.statuses == {"200": result.ok}
    assert result.client_cpu_percent is not None and result.client_cpu_percent > 0
    assert 0 < result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["max"]
    # Texts survive the percent-encoding intact, including reserved characters.
    assert set(server.settings["seen"]) == set(TEXTS)


@pytest.mark.timing
def test_fixed_rate_sends_on_schedule(server: ServerThread) -> None:
    spec = LoadSpec(url=server.url, texts=TEXTS, mode="rate", rate=200, duration=1.0, connections=8)
    started = time.monotonic()
    result = asyncio.run(run_load(spec))
    assert time.monotonic() - started < within(3)
    assert result.errors == 0
    assert result.ok == 200  # exactly rate × duration requests, no more, no fewer
    assert result.requests_per_s == pytest.approx(200, rel=0.01)


def test_open_loop_charges_queueing_to_latency() -> None:
    """A service that does 50 requests/s offered 100/s: latency must show the backlog.

    A closed-loop client would slow down to the service's pace and report ~service time per
    request (coordinated omission); the open-loop generator measures from the scheduled time.
    """
    with ServerThread(delay=0.02, serial=True) as slow:
        spec = LoadSpec(url=slow.url, texts=TEXTS, mode="rate", rate=100, duration=1.0,
                        connections=4, timeout=5.0)
        result = asyncio.run(run_load(spec))
    assert result.errors == 0 and result.ok == 100
    assert result.latency_ms["p99"] > 500  # the last requests waited about a second
    assert result.latency_ms["p50"] > 10 * 20


def test_post_batches_carry_exactly_batch_texts(server: ServerThread) -> None:
    spec = LoadSpec(url=server.url, texts=TEXTS, kind="post", batch=10, mode="saturation",
                    duration=0.4, connections=2)
    result = asyncio.run(run_load(spec))
    assert result.errors == 0 and result.ok > 0
    assert result.messages_ok == 10 * result.ok


def test_error_statuses_are_counted() -> None:
    with ServerThread(fail=True) as failing:
        spec = LoadSpec(url=failing.url, texts=TEXTS, mode="saturation", duration=0.3, connections=2)
        result = asyncio.run(run_load(spec))
    assert result.ok == 0 and result.errors == result.requests > 0
    assert result.error_kinds == {"http_503": result.errors}


@pytest.mark.timing
def test_timeouts_are_bounded_and_counted() -> None:
    with ServerThread(delay=3.0) as stuck:
        spec = LoadSpec(url=stuck.url, texts=TEXTS, mode="rate", rate=20, duration=0.5,
                        connections=4, timeout=0.3)
        started = time.monotonic()
        result = asyncio.run(run_load(spec))
        elapsed = time.monotonic() - started
    assert elapsed < within(0.5 + 0.3 + 1.0)  # duration + timeout + slack: the run stops by itself
    assert result.ok == 0 and result.errors == 10
    assert set(result.error_kinds) <= {"timeout", "deadline"}


def test_refused_connections_are_errors_not_crashes() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    spec = LoadSpec(url=f"http://127.0.0.1:{port}", texts=TEXTS, mode="rate", rate=50,
                    duration=0.2, connections=2)
    result = asyncio.run(run_load(spec))
    assert result.ok == 0 and result.error_kinds == {"connection": 10}


@pytest.mark.parametrize("url", ["http://192.0.2.1:8000", "https://127.0.0.1:8000", "ftp://localhost"])
def test_only_loopback_http_targets(url: str) -> None:
    with pytest.raises(UserError):
        loopback_address(url)


def test_loopback_names_are_accepted() -> None:
    assert loopback_address("http://localhost:8123") == ("localhost", 8123)
    assert loopback_address("http://127.0.0.2") == ("127.0.0.2", 80)


def test_requests_are_valid_http() -> None:
    get = build_requests("127.0.0.1", 80, ["你好 世界"], "get", 1)
    assert get[0][0].startswith(b"GET /predict?text=%E4%BD%A0%E5%A5%BD%20%E4%B8%96%E7%95%8C HTTP/1.1\r\n")
    posts = build_requests("127.0.0.1", 80, TEXTS, "post", 3)
    head, body = posts[0][0].split(b"\r\n\r\n", 1)
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"texts": TEXTS[:3]} and posts[0][1] == 3


def test_invalid_specs_are_user_errors() -> None:
    with pytest.raises(UserError):
        LoadSpec(url="http://127.0.0.1:1", texts=TEXTS, mode="rate", rate=0).validate()
    with pytest.raises(UserError):
        LoadSpec(url="http://127.0.0.1:1", texts=[]).validate()
    with pytest.raises(UserError):
        LoadSpec(url="http://127.0.0.1:1", texts=TEXTS, duration=1, warmup=2).validate()


def test_generator_runs_in_its_own_process(server: ServerThread, tmp_path: Path) -> None:
    spec = LoadSpec(url=server.url, texts=TEXTS, mode="rate", rate=50, duration=0.5, warmup=0.1)
    result = run_in_subprocess(spec, tmp_path)
    assert result.errors == 0 and result.ok == 20  # 25 sent, the 5 of the warmup not recorded
    assert result.sent_total == 25
    assert not list(tmp_path.iterdir())  # spec and result files cleaned up
