"""Faults, each bounded in time, against real ``antispam serve`` processes.

* TF Serving's gRPC side killed mid-load: REST takes over; only requests in flight at the kill
  may fail. TF Serving serves gRPC and REST from one process, so killing it takes both down
  (that is the next case). To kill the gRPC side for real (SIGKILL: connections reset
  mid-call, no goodbye) while REST lives, the service's gRPC target and REST target are two
  stand-in processes serving the same model folder.
* Both down: 503 within the deadline; back to 200 when they return, without a restart.
* A backend that stalls: the deadline holds and the model queue stays bounded (503 when full).
* SIGTERM: requests in flight finish, new ones are refused, exit code 0.
* A corrupt or half-written version appears: it is skipped and the old version keeps serving.

Traffic comes from threads sending one request at a time on keep-alive connections, recording
when each request started and ended, so a failure can be placed against the moment of the fault.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from antispam.bench.scenarios import Service, ServiceProcess
from tests.helpers.timing import within

SPAM_TEXT = "代开发票，优惠贷款，加微信13800138000"


# -- helpers -----------------------------------------------------------------------------------

@dataclass
class Outcome:
    started: float
    ended: float
    status: int | None  # None: no HTTP answer (connection refused/reset)
    code: str | None = None
    version: int | None = None


def call(port: int, text: str = SPAM_TEXT, timeout: float = 10.0,
         conn: http.client.HTTPConnection | None = None) -> Outcome:
    """One GET /predict; never raises."""
    started = time.monotonic()
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/predict?text=" + urllib.parse.quote(text))
        response = conn.getresponse()
        body = json.loads(response.read())
        status = response.status
    except (OSError, http.client.HTTPException, ValueError):
        conn.close()
        return Outcome(started, time.monotonic(), None)
    finally:
        if own:
            conn.close()
    if status == 200:
        return Outcome(started, time.monotonic(), status, version=body["data"]["model"]["version"])
    return Outcome(started, time.monotonic(), status, code=body["error"]["code"])


@dataclass
class Traffic:
    """``threads`` clients, each sending requests back to back on its own keep-alive connection."""

    port: int
    threads: int = 4
    pause: float = 0.01
    limit_s: float = 60.0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        end = time.monotonic() + self.limit_s  # bounded even if the test forgets to stop it
        while not self._stop.is_set() and time.monotonic() < end:
            outcome = call(self.port, conn=conn)
            if outcome.status is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            with self._lock:
                self.outcomes.append(outcome)
            time.sleep(self.pause)
        conn.close()

    def __enter__(self) -> "Traffic":
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(15)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]


def metric(port: int, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` (with these labels) in /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def serve(tmp_path: Path, model_base: Path, *, backend: str = "local", workers: int = 1,
          **flags: Any) -> ServiceProcess:
    extra: list[str] = []
    for name, value in flags.items():
        extra += ["--" + name.replace("_", "-"), str(value)]
    return ServiceProcess(Service(f"faults-{backend}", backend, workers), model_base=str(model_base),
                          model_name="cnn", workdir=tmp_path, cache_size=0, extra_args=tuple(extra),
                          ready_timeout=120)


# -- remote backends: two stand-ins, one service ---------------------------------------------

@dataclass
class RemoteRig:
    grpc_side: Any  # StandinTFS whose gRPC port the service uses
    rest_side: Any  # StandinTFS whose REST port the service uses
    service: ServiceProcess
    deadline_s: float

    def ensure_up(self) -> None:
        """Bring back what an earlier test stopped (each test starts from a healthy rig, and a
        test that leaves a stand-in down saves the next one a restart it would do anyway)."""
        down = [tfs for tfs in (self.grpc_side, self.rest_side) if not tfs.running]
        with ThreadPoolExecutor(2) as pool:  # each start imports TensorFlow: in parallel
            list(pool.map(lambda tfs: tfs.start(), down))
        wait_for(lambda: call(self.service.port).status == 200, 30, "the service to answer")

    def resume(self) -> None:
        for tfs in (self.grpc_side, self.rest_side):
            if tfs.running:
                tfs.resume()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteRig]:
    from antispam.testing.standin_tfs import StandinTFS
    from antispam.testing.tinymodel import build_version

    root = tmp_path_factory.mktemp("faults-remote")
    models = root / "models"
    build_version(models / "cnn")
    grpc_side = StandinTFS(models, poll=0.2, log_path=root / "standin-grpc.log")
    rest_side = StandinTFS(models, poll=0.2, log_path=root / "standin-rest.log")
    deadline_ms = 600
    service: ServiceProcess | None = None
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda tfs: tfs.start(), (grpc_side, rest_side)))
        # --backend auto probes TF Serving at start, so the service starts after the stand-ins.
        service = serve(root, models, backend="auto", deadline_ms=deadline_ms, poll_seconds=0.5,
                        tfs_grpc=grpc_side.grpc_target, tfs_rest=rest_side.rest_url).start()
        yield RemoteRig(grpc_side, rest_side, service, deadline_ms / 1000)
    finally:
        if service is not None:
            service.stop()
        grpc_side.stop()
        rest_side.stop()


@pytest.mark.timing
def test_stalled_backends_answer_503_within_the_deadline(remote: RemoteRig) -> None:
    remote.ensure_up()
    port = remote.service.port
    try:
        remote.grpc_side.pause()  # SIGSTOP: connections accepted by the kernel, nothing answers
        remote.rest_side.pause()
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda _: call(port), range(16)))
        for o in outcomes:
            assert o.status == 503, o
            assert o.ended - o.started <= within(remote.deadline_s + 0.4), o
    finally:
        remote.resume()
    wait_for(lambda: call(port).status == 200, 30, "recovery after the stall")


@pytest.mark.timing
def test_stalled_remote_backend_sheds_load_past_max_queue(tmp_path: Path, remote: RemoteRig) -> None:
    remote.ensure_up()
    models = remote.service.command[remote.service.command.index("--model-base") + 1]
    bounded = serve(tmp_path, Path(models), backend="auto", deadline_ms=3000, max_queue=4,
                    tfs_grpc=remote.grpc_side.grpc_target, tfs_rest=remote.rest_side.rest_url)
    with bounded:
        try:
            remote.grpc_side.pause()
            remote.rest_side.pause()
            with ThreadPoolExecutor(16) as pool:
                outcomes = list(pool.map(lambda _: call(bounded.port), range(16)))
        finally:
            remote.resume()
    shed = [o for o in outcomes if o.code == "overloaded" and o.ended - o.started < within(0.5)]
    assert len(shed) >= 8, outcomes


def test_grpc_killed_mid_load_rest_takes_over(remote: RemoteRig) -> None:
    remote.ensure_up()
    port = remote.service.port
    rest_before = metric(port, "antispam_backend_requests_total", backend="rest")
    with Traffic(port, threads=4) as traffic:
        time.sleep(1.5)
        killed_at = time.monotonic()
        remote.grpc_side.stop()  # SIGKILL
        time.sleep(2.5)
    outcomes = traffic.outcomes
    before = [o for o in outcomes if o.ended < killed_at]
    after = [o for o in outcomes if o.started > killed_at]
    assert len(before) > 20 and len(after) > 20, (len(before), len(after))
    assert all(o.status == 200 for o in before)
    # Only requests in flight at the kill may fail (in practice none do: they are retried over
    # REST within their deadline).
    for o in traffic.failures():
        assert o.started <= killed_at <= o.ended, o
    assert len(traffic.failures()) <= traffic.threads
    assert all(o.status == 200 for o in after)
    assert metric(port, "antispam_backend_requests_total", backend="rest") > rest_before


@pytest.mark.timing
def test_both_down_then_503_within_deadline_and_recovery(remote: RemoteRig) -> None:
    port = remote.service.port
    assert call(port).status == 200 or not remote.grpc_side.running  # REST alone is enough
    remote.grpc_side.stop()
    remote.rest_side.stop()
    outcomes = [call(port) for _ in range(5)]
    for o in outcomes:
        assert o.status == 503 and o.code in ("backend_unavailable", "deadline_exceeded"), o
        assert o.ended - o.started <= within(remote.deadline_s + 0.3), o
    pid = remote.service.pid
    remote.ensure_up()  # restarts both, waits for a 200 (bounded: 30 s)
    assert remote.service.pid == pid and remote.service.process.poll() is None  # no restart
    assert all(call(port).status == 200 for _ in range(5))


# -- local backend -------------------------------------------------------------------------------

@pytest.mark.timing
def test_stalled_model_keeps_deadline_and_bounded_queue(tmp_path: Path) -> None:
    from antispam.testing.tinymodel import build_version

    models = tmp_path / "models"
    build_version(models / "cnn", sleep_ms=400, warmup_texts=["好"])  # each model call takes 0.4 s
    deadline = 0.3
    with serve(tmp_path, models, deadline_ms=deadline * 1000, max_queue=6, batch_size=2) as service:
        with ThreadPoolExecutor(24) as pool:
            outcomes = list(pool.map(lambda i: call(service.port, f"{SPAM_TEXT} {i}"), range(48)))
        for o in outcomes:
            assert o.status == 503 and o.code in ("deadline_exceeded", "overloaded"), o
            assert o.ended - o.started <= within(deadline + 0.4), o
        assert any(o.code == "overloaded" for o in outcomes)  # the queue filled and shed load
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
        conn.request("GET", "/models")
        status = json.loads(conn.getresponse().read())
        conn.close()
        assert status["queued_texts"] <= 6
        wait_for(lambda: call(service.port).code == "deadline_exceeded", 5, "the queue to drain")
        assert call(service.port, timeout=2).status == 503  # answered, not hanging: no pile-up


@pytest.mark.timing
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_in_flight_refuses_new_and_exits_0(tmp_path: Path, workers: int) -> None:
    from antispam.testing.tinymodel import build_version

    models = tmp_path / "models"
    build_version(models / "cnn", sleep_ms=1500, warmup_texts=["好"])
    service = serve(tmp_path, models, workers=workers, deadline_ms=5000).start()
    try:
        port, process = service.port, service.process
        assert process is not None
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        idle.request("GET", "/healthz")
        assert idle.getresponse().read()  # a keep-alive connection, open before the signal
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(call, port)
            time.sleep(0.5)  # the request is inside the 1.5 s model call
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            time.sleep(0.3)
            late = call(port, "新的请求", timeout=3)
            on_open_connection = call(port, "新的请求", conn=idle, timeout=3)
            answer = in_flight.result(timeout=15)
        assert answer.status == 200 and answer.ended > signalled, answer
        # A new connection is refused at once (not left hanging); a request on a connection
        # opened before the signal is refused with 503 shutting_down, or its connection closed.
        assert late.status is None and late.ended - late.started < within(1.0), late
        assert on_open_connection.status is None or on_open_connection.code == "shutting_down"
        assert process.wait(timeout=20) == 0
    finally:
        service.stop()


def test_corrupt_and_half_written_versions_are_skipped(tmp_path: Path) -> None:
    from antispam.testing.tinymodel import build_version

    models = tmp_path / "models"
    build_version(models / "cnn")
    with serve(tmp_path, models, poll_seconds=0.2) as service:
        assert call(service.port).version == 1
        good = models / "cnn" / "1"
        # 2: a corrupt graph; 3: half-copied by hand, without variables/; a staging folder in
        # progress (hidden name) is not a version at all.
        corrupt = models / "cnn" / "2"
        shutil.copytree(good, corrupt)
        (corrupt / "saved_model.pb").write_bytes(b"\x08garbage" * 100)
        half = models / "cnn" / "3"
        shutil.copytree(good, half)
        shutil.rmtree(half / "variables")
        staging = models / "cnn" / ".staging-inprogress"
        staging.mkdir()
        (staging / "saved_model.pb").write_bytes(b"")

        def states() -> dict[int, str]:
            conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
            conn.request("GET", "/models")
            body = json.loads(conn.getresponse().read())
            conn.close()
            return {v["version"]: v["state"] for v in body["versions"]}

        wait_for(lambda: states().get(2) == "failed" and states().get(3) == "failed", 20,
                 "both bad versions to be tried and skipped")
        assert states()[1] == "serving" and len(states()) == 3
        with Traffic(service.port, threads=2) as traffic:
            time.sleep(1.0)
        assert traffic.outcomes and not traffic.failures()
        assert {o.version for o in traffic.outcomes} == {1}
        # The poller still works: a good version published properly takes over.
        assert build_version(models / "cnn") == 4
        wait_for(lambda: call(service.port).version == 4, 20, "version 4 to serve")
