"""``antispam serve`` as a real process: starts on port 0, answers, drains and exits 0 on
SIGTERM (one process and --workers 2), refuses bad settings before loading anything."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.helpers import serve_process, tinymodel


@pytest.fixture
def serve(tmp_path):
    started: list[serve_process.ServeProcess] = []

    def start(*args: str) -> serve_process.ServeProcess:
        # The local backend unless ``args`` names another (a later flag wins).
        process = serve_process.ServeProcess("--backend", "local", *args, cwd=tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def get_json(url: str, timeout: float = 30.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_answers_and_drains_in_flight_requests_on_sigterm(tmp_path, serve):
    tinymodel.build_version(tmp_path / "models" / "rnn")
    # A long batch wait keeps each request in flight for a while, so SIGTERM lands mid-request.
    server = serve("--model-base", str(tmp_path / "models"), "--batch-wait-ms", "1500",
                   "--deadline-ms", "5000")
    url = server.wait_ready()
    assert "model rnn version 1" in server.log
    assert get_json(url + "/readyz")[0] == 200
    status, body = get_json(url + "/predict?text=" + urllib.parse.quote(tinymodel.SPAM_TEXT))
    assert (status, body["data"]["predict"], body["data"]["label"]) == (200, 0, "spam")

    result: dict = {}

    def in_flight() -> None:
        result["status"], result["body"] = get_json(
            url + "/predict?text=" + urllib.parse.quote(tinymodel.PASS_TEXT))

    client = threading.Thread(target=in_flight)
    client.start()
    time.sleep(0.5)  # the request is now waiting in the micro-batcher
    assert server.terminate() == 0, server.log
    client.join(10)
    assert result["status"] == 200 and result["body"]["data"]["label"] == "pass"
    assert "stopped" in server.log
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/healthz", timeout=5)


def test_two_workers_share_the_port_and_stop_together(tmp_path, serve):
    tinymodel.build_version(tmp_path / "models" / "rnn")
    server = serve("--model-base", str(tmp_path / "models"), "--workers", "2")
    url = server.wait_ready(count=2, timeout=180)
    pids = set(re.findall(r"ready on \S+ \(worker \d, pid (\d+)\)", server.log))
    assert len(pids) == 2
    for _ in range(5):
        assert get_json(url + "/predict?text=" + urllib.parse.quote(tinymodel.PASS_TEXT))[0] == 200
    assert server.terminate() == 0, server.log
    assert server.log.count("stopped (worker") == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


@pytest.mark.parametrize("args, message", [
    (["--review-threshold", "0.95", "--block-threshold", "0.9"], "thresholds"),
    (["--port", "70000"], "--port"),
    (["--workers", "0"], "--workers"),
    (["--breaker-failures", "0"], "--breaker-failures"),
    (["--breaker-cooldown-s", "-1"], "--breaker-cooldown-s"),
    (["--backend", "docker"], "invalid choice"),
])
def test_bad_settings_fail_fast_with_a_message(tmp_path, args, message):
    done = subprocess.run([sys.executable, "-m", "antispam", "serve", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_environment_value_is_a_clear_error(tmp_path):
    env = dict(os.environ, ANTISPAM_DEADLINE_MS="soon")
    done = subprocess.run([sys.executable, "-m", "antispam", "serve"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "ANTISPAM_DEADLINE_MS" in done.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "antispam", "serve", "--host", "127.0.0.1",
                               "--port", str(port)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 2 and "cannot listen" in done.stderr


def test_importing_the_app_and_serve_loads_nothing_heavy():
    code = ("import sys, antispam.app, antispam.commands.serve, antispam.commands.predict, "
            "antispam.backends.local; "
            "heavy = [m for m in ('tensorflow', 'jieba', 'tensorlayer', 'grpc') if m in sys.modules]; "
            "print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
