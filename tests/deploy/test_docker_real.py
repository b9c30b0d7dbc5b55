"""The real stack — ``docker compose up`` with the official TF Serving image — where an engine runs.

Skipped (with the reason) unless ``docker info`` succeeds and a compose tool is installed; no
Docker engine runs on the machines this project is developed on (docs/architecture.md#test-equipment), so this is the
test a person with Docker runs: ``pytest -m docker tests/deploy/test_docker_real.py``. It builds the
service image (pip needs network access), seeds the models volume with a tiny version, and checks
what README promises: the service answers through TF Serving over gRPC, and a version published
into the volume is served without a restart and without a failed request.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from antispam.testing import tinymodel

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "antispam-e2e"
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _engine() -> list[str] | None:
    """The compose command if an engine answers, else None."""
    if shutil.which("docker") is None:
        return None
    try:
        if subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode != 0:
            return None
    except (OSError, subprocess.TimeoutExpired):
        return None
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None



def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


COMPOSE_BASE: list[str] = []  # the compose command of the running stack (set by the fixture)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    compose = _engine()
    if compose is None:
        pytest.skip("no Docker engine answers `docker info` (or no compose tool): the real "
                    "TF Serving stack cannot run here; tests/deploy/test_compose.py checks the file instead")
    busy = [p for p in (8000, 8500, 8501) if not _port_free(p)]
    if busy:  # 8500/8501 too: the test checks that TF Serving's ports stay closed on the host
        pytest.skip(f"ports {busy} are in use; docker-compose.yml publishes 8000")
    root = tmp_path_factory.mktemp("docker")
    models = root / "models"
    tinymodel.build_version(models / "rnn")  # compose serves the default network, the RNN
    (models / "cnn").mkdir()
    override = root / "override.yml"
    # The models volume becomes a bind of the seeded folder; retrain trains nothing at start
    # (rnn has a version) and sleeps until 03:00.
    override.write_text(json.dumps({
        "volumes": {"models": {"driver": "local",
                               "driver_opts": {"type": "none", "o": "bind", "device": str(models)}}},
    }), encoding="utf-8")
    base = [*compose, "-p", PROJECT, "-f", str(ROOT / "docker-compose.yml"), "-f", str(override)]
    COMPOSE_BASE[:] = base
    up = subprocess.run([*base, "up", "-d", "--build"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        # Compose turns API keys on (ANTISPAM_KEYS_FILE): add one (predict; admin for /models) the way
        # docs/operations.md says; the service re-reads the file without a restart. The key is the
        # first line printed.
        added = subprocess.run([*base, "exec", "-T", "antispam", "antispam", "keys", "add", "e2e", "--roles",
                                "predict,feedback,admin"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert added.returncode == 0, added.stderr[-2000:]
        KEY.append(added.stdout.splitlines()[0].strip())
        yield models
    finally:
        logs = subprocess.run([*base, "logs", "--no-color", "--tail", "80"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        print(logs.stdout[-8000:])
        subprocess.run([*base, "down", "-v", "--remove-orphans"], cwd=ROOT, capture_output=True, timeout=300)


KEY: list[str] = []  # the API key the stack fixture added


def get(path: str, timeout: float = 5.0) -> tuple[int, dict]:
    """GET from the service with the fixture's key (every route but the probes needs one)."""
    headers = {"Authorization": f"Bearer {KEY[-1]}"} if KEY else {}
    request = urllib.request.Request(f"http://127.0.0.1:8000{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_ready(timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            # Ready, and the added key accepted (the keys file is re-read within a second or so).
            if get("/readyz")[0] == 200 and get("/models")[0] == 200:
                return
        except (OSError, ValueError):
            pass
        time.sleep(2)
    raise AssertionError(f"/readyz not 200 within {timeout} s")


def predict(text: str) -> dict:
    status, body = get("/predict?" + urllib.parse.urlencode({"text": text}))
    assert status == 200, body
    return body["data"]


def test_service_answers_through_tf_serving(stack: Path) -> None:
    wait_ready()
    without = urllib.request.Request("http://127.0.0.1:8000/predict?text=x")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(without, timeout=5)
    assert refused.value.code == 401  # keys are on: no key, no answer
    answer = predict(tinymodel.SPAM_TEXT)
    assert answer["label"] == "spam" and answer["model"] == {"name": "rnn", "version": 1}
    status, models = get("/models")
    assert status == 200 and "grpc" in json.dumps(models)
    # TF Serving answers on the compose network (from the antispam container), not on the host.
    for path, expected in (("/v1/models/rnn", "AVAILABLE"), ("/monitoring/prometheus/metrics", ":tensorflow:serving:")):
        seen = subprocess.run([*COMPOSE_BASE, "exec", "-T", "antispam", "python", "-c",
                               f"import urllib.request as u; print(u.urlopen('http://tfserving:8501{path}', "
                               "timeout=5).read().decode())"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert expected in seen.stdout, seen.stderr[-2000:]
    for port in (8500, 8501):
        assert _port_free(port), f"TF Serving's port {port} is published on the host"


def test_a_published_version_is_served_without_a_failed_request(stack: Path) -> None:
    wait_ready()
    version = tinymodel.build_version(stack / "rnn", flip=True)
    failures, end = 0, time.monotonic() + 120
    while time.monotonic() < end:
        status, body = get("/predict?" + urllib.parse.urlencode({"text": tinymodel.SPAM_TEXT}))
        if status != 200:
            failures += 1
        elif body["data"]["model"]["version"] == version:
            assert body["data"]["label"] == "spam"
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"version {version} never answered")
    assert failures == 0
