"""gRPC with REST fallback and a circuit breaker: with fake protocols (exact, fast) and end to end
against the stand-in TF Serving (outages, deadline, recovery, and pinning a new version)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pytest

from antispam import versions as layout
from antispam.backends.base import BackendError, BatchResult, DeadlineExceeded, Overloaded
from antispam.backends.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from antispam.backends.fallback import FallbackBackend
from antispam.backends.remote import BadResponse, Unreachable, UnreachableDeadline
from antispam.backends.remote_versions import AVAILABLE, RemoteVersions
from antispam.config import ServeConfig
from antispam.features import WordVectors
from antispam.testing.standin_tfs import StandinTFS
from antispam.testing.tinymodel import PASS_TEXT, SPAM_TEXT
from antispam.text import tokenize
from tests.helpers.standin import publish_tiny, remote_config, run_started, shared_standin, standin_serving
from tests.helpers.timing import within

SPAM, PASS = tokenize(SPAM_TEXT), tokenize(PASS_TEXT)

# --- with fake protocols ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeProtocol:
    """Stands for GrpcBackend / RestBackend: answers, refuses, hangs or answers nonsense."""

    def __init__(self, name: str, mode: str = "ok") -> None:
        self.name = name
        self.mode = mode
        self.timeouts: list[float] = []
        self.status_calls = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def target(self) -> str:
        return f"fake-{self.name}"

    async def _act(self, timeout: float) -> None:
        if self.mode == "down":
            raise Unreachable(f"{self.name} refused")
        if self.mode == "hang":
            await asyncio.sleep(timeout)
            raise UnreachableDeadline(f"{self.name} timed out")
        if self.mode == "bad":
            raise BadResponse(f"{self.name} answered nonsense")

    async def predict(self, batch: Sequence[Sequence[str]], timeout: float) -> BatchResult:
        self.timeouts.append(timeout)
        await self._act(timeout)
        return BatchResult(np.full(len(batch), 0.25), "cnn", 1, self.name)

    async def fetch_states(self, timeout: float) -> Mapping[int, str]:
        self.status_calls += 1
        await self._act(timeout)
        return {1: AVAILABLE}


def fake_versions() -> RemoteVersions:
    def loader(model_dir: Path, version: int) -> layout.VersionAssets:
        vectors = WordVectors(["UNK"], np.zeros((1, 200), np.float32))
        return layout.VersionAssets(version, model_dir, vectors, {}, {})

    return RemoteVersions("/nowhere", "cnn", loader=loader, status_timeout=0.1)


def fallback(grpc_mode: str = "ok", rest_mode: str = "ok", clock: Clock | None = None,
             failures: int = 3, max_queue: int = 2000) -> FallbackBackend:
    return FallbackBackend(ServeConfig(poll_seconds=60, max_queue=max_queue),
                           primary=FakeProtocol("grpc", grpc_mode),  # type: ignore[arg-type]
                           secondary=FakeProtocol("rest", rest_mode),  # type: ignore[arg-type]
                           breaker=CircuitBreaker(failures=failures, cooldown=5, clock=clock or Clock()),
                           versions=fake_versions())


def scenario(backend: FallbackBackend, body: Any) -> Any:
    async def main() -> Any:
        await backend.start()
        try:
            return await body()
        finally:
            await backend.close()

    return asyncio.run(main())


def test_grpc_answers_when_it_can() -> None:
    backend = fallback()

    async def body() -> BatchResult:
        assert backend.ready and backend.current_version == 1
        return await backend.predict([SPAM], timeout=1)

    result = scenario(backend, body)
    assert result.backend == "grpc" and backend.fallbacks == 0 and backend.answered == {"grpc": 1, "rest": 0}
    assert backend.status()["breaker"]["state"] == CLOSED and not backend.ready  # closed


def test_refused_grpc_falls_back_to_rest_with_the_rest_of_the_deadline() -> None:
    backend = fallback(grpc_mode="down")
    result = scenario(backend, lambda: backend.predict([SPAM], timeout=1))
    assert result.backend == "rest" and result.extra["fallback"] is True
    assert "refused" in result.extra["fallback_reason"]
    assert backend.fallbacks == 1 and backend.grpc_failures >= 1
    grpc, rest = backend.primary, backend.secondary
    assert grpc.timeouts == [pytest.approx(0.6)]  # its share of the deadline
    assert 0.95 < rest.timeouts[0] <= 1.0  # what was left: nearly all of it


def test_breaker_opens_skips_grpc_then_probes_and_closes() -> None:
    clock = Clock()
    backend = fallback(grpc_mode="down", clock=clock, failures=3)
    grpc = backend.primary

    async def body() -> None:
        # start() asked for versions over gRPC once (failure 1 of 3)
        for _ in range(4):
            assert (await backend.predict([SPAM], timeout=1)).backend == "rest"
        assert backend.breaker_state == OPEN and len(grpc.timeouts) == 2  # calls 2 and 3 opened it
        clock.now += 5
        assert backend.breaker_state == HALF_OPEN
        grpc.mode = "ok"
        assert (await backend.predict([SPAM], timeout=1)).backend == "grpc"  # the trial
        assert backend.breaker_state == CLOSED

    scenario(backend, body)
    assert backend.fallbacks == 4 and backend.answered == {"grpc": 1, "rest": 4} and backend.breaker.opens == 1


def test_version_poll_probes_grpc_so_it_resumes_without_traffic() -> None:
    clock = Clock()
    backend = fallback(grpc_mode="down", clock=clock, failures=1)
    grpc, rest = backend.primary, backend.secondary

    async def body() -> None:
        assert backend.breaker_state == OPEN and rest.status_calls == 1  # start() fell back to REST
        await asyncio.shield(backend.versions.refresh())
        assert grpc.status_calls == 1 and rest.status_calls == 2  # open: straight to REST
        grpc.mode = "ok"
        clock.now += 5
        await asyncio.shield(backend.versions.refresh())  # the half-open trial
        assert backend.breaker_state == CLOSED and rest.status_calls == 2

    scenario(backend, body)


def test_an_error_answer_from_grpc_is_not_retried_over_rest() -> None:
    backend = fallback(grpc_mode="bad")

    async def body() -> None:
        with pytest.raises(BadResponse):
            await backend.predict([SPAM], timeout=1)

    scenario(backend, body)
    assert backend.secondary.timeouts == [] and backend.breaker_state == CLOSED and backend.failures == 1


@pytest.mark.timing
def test_both_hanging_fail_within_the_deadline() -> None:
    backend = fallback(grpc_mode="hang", rest_mode="hang")

    async def body() -> float:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="gRPC: grpc timed out; REST: rest timed out"):
            await backend.predict([SPAM], timeout=0.4)
        return time.monotonic() - started

    elapsed = scenario(backend, body)
    assert 0.39 <= elapsed < within(0.55) and backend.failures == 1


@pytest.mark.timing
def test_requests_past_max_queue_are_shed_at_once_while_tf_serving_stalls() -> None:
    backend = fallback(grpc_mode="hang", rest_mode="hang", max_queue=3)

    async def body() -> None:
        waiting = [asyncio.ensure_future(backend.predict([SPAM, PASS], timeout=0.5)),
                   asyncio.ensure_future(backend.predict([SPAM], timeout=0.5))]
        await asyncio.sleep(0.05)
        assert backend.in_flight == 3
        started = time.monotonic()
        with pytest.raises(Overloaded):
            await backend.predict([SPAM], timeout=0.5)
        assert time.monotonic() - started < within(0.05)
        for task in waiting:
            with pytest.raises(DeadlineExceeded):
                await task
        assert backend.in_flight == 0
        backend.primary.mode = backend.secondary.mode = "ok"
        assert len((await backend.predict([SPAM, PASS, SPAM], timeout=0.5)).spam_probability) == 3

    scenario(backend, body)


def test_a_cancelled_trial_does_not_wedge_the_breaker() -> None:
    clock = Clock()
    backend = fallback(grpc_mode="down", clock=clock, failures=1)

    async def body() -> None:
        clock.now += 5
        backend.primary.mode = "hang"
        task = asyncio.ensure_future(backend.predict([SPAM], timeout=10))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert backend.breaker.allow()  # another caller can be the trial

    scenario(backend, body)


# --- end to end against the stand-in ------------------------------------------------------------

MODEL = "fallback_cnn"
PIN_MODEL = "fallback_pin"


@pytest.fixture(scope="module")
def tfs() -> StandinTFS:
    return standin_serving(MODEL, PIN_MODEL)


def config(tfs: StandinTFS, model: str = MODEL, **overrides: Any) -> ServeConfig:
    return remote_config(tfs, model, **overrides)


def run(backend: FallbackBackend, body: Any) -> Any:
    return run_started(backend, body)


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


def test_grpc_down_rest_answers_then_grpc_resumes(tfs: StandinTFS) -> None:
    async def body(backend: FallbackBackend) -> None:
        assert (await backend.predict([SPAM], timeout=2)).backend == "grpc"
        tfs.grpc_down()
        for _ in range(4):
            result = await backend.predict([SPAM, PASS], timeout=2)
            assert result.backend == "rest" and result.spam_probability[0] > 0.5 > result.spam_probability[1]
        assert backend.breaker_state == OPEN and backend.fallbacks == 4
        tfs.grpc_up()
        # After the cool-down a trial goes to gRPC; until the channel has reconnected (its
        # backoff is at most 2 s) trials fail and REST answers. Then gRPC answers for good.
        deadline = time.monotonic() + 6
        while (await backend.predict([SPAM], timeout=2)).backend != "grpc":
            assert time.monotonic() < deadline, "gRPC did not resume"
            await asyncio.sleep(0.1)
        answered_by = [(await backend.predict([SPAM], timeout=2)).backend for _ in range(3)]
        assert answered_by == ["grpc"] * 3 and backend.breaker_state == CLOSED

    # The breaker comes from the settings (--breaker-failures, --breaker-cooldown-s).
    backend = FallbackBackend(config(tfs, breaker_failures=2, breaker_cooldown_s=0.5))
    assert (backend.breaker.threshold, backend.breaker.cooldown) == (2, 0.5)
    try:
        run(backend, body)
    finally:
        tfs.grpc_up()


@pytest.mark.timing
def test_both_silent_is_a_backend_error_within_the_deadline(tfs: StandinTFS) -> None:
    async def body(backend: FallbackBackend) -> float:
        assert backend.ready
        tfs.pause()
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await backend.predict([SPAM], timeout=0.5)
        return time.monotonic() - started

    try:
        elapsed = run(FallbackBackend(config(tfs)), body)
    finally:
        tfs.resume()
    assert 0.49 <= elapsed < within(0.8)


@pytest.mark.timing
def test_killed_and_restarted_tf_serving(tfs: StandinTFS) -> None:
    """Killed: every request fails fast; back on the same ports: gRPC answers again."""
    async def body(backend: FallbackBackend) -> dict[str, float]:
        assert (await backend.predict([SPAM], timeout=2)).backend == "grpc"
        tfs.stop()
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            await backend.predict([SPAM], timeout=2)
        refused = time.monotonic() - started
        assert not isinstance(info.value, DeadlineExceeded)
        await asyncio.get_running_loop().run_in_executor(None, tfs.start)
        await wait_for(lambda: backend.ready, timeout=10)
        # Until the gRPC channel has reconnected (its backoff is at most 2 s) REST answers.
        answered_by = []
        deadline = time.monotonic() + 10
        while not answered_by or answered_by[-1] != "grpc":
            assert time.monotonic() < deadline, answered_by
            answered_by.append((await backend.predict([SPAM], timeout=2)).backend)
            await asyncio.sleep(0.1)
        return {"refused": refused, "backend": answered_by[-1], "state": backend.breaker_state}

    try:
        outcome = run(FallbackBackend(config(tfs), breaker=CircuitBreaker(failures=1, cooldown=0.5)), body)
    finally:
        shared_standin()  # restarts it if the test failed half-way
    assert outcome["refused"] < within(0.5)
    assert outcome["backend"] == "grpc" and outcome["state"] == CLOSED


@pytest.mark.parametrize("kind", ["grpc", "rest"])
def test_a_new_version_is_pinned_only_once_its_vectors_are_loaded(tfs: StandinTFS, kind: str) -> None:
    """Version 2 is built with negated vectors AND weights (tinymodel flip): paired with version
    1's vectors it gives the opposite verdict. While v2's vectors are held back, the frontend must
    keep sending v1-built tensors to v1; once they load, v2-built tensors to v2."""
    gate = threading.Event()
    first = max(tfs.states(PIN_MODEL))

    def loader(model_dir: Path, version: int) -> layout.VersionAssets:
        if version > first:
            gate.wait(20)
        return layout.load_assets(model_dir, version)

    async def body(backend: FallbackBackend) -> None:
        if kind == "rest":
            backend.breaker.failure()  # open: everything goes over REST
        assert backend.current_version == first
        new = await asyncio.get_running_loop().run_in_executor(
            None, lambda: publish_tiny(tfs, PIN_MODEL, flip=not flipped(first)))
        assert tfs.states(PIN_MODEL)[first] == AVAILABLE  # the stand-in keeps two versions
        await asyncio.sleep(0.5)  # several polls: the frontend has seen `new` AVAILABLE
        for _ in range(3):
            result = await backend.predict([SPAM, PASS], timeout=2)
            assert result.version == first and result.backend == kind
            assert result.spam_probability[0] > 0.5 > result.spam_probability[1]
        # the trap the frontend avoids: old vectors sent to the new weights flip the verdict
        mixed = layout.VersionAssets(new, Path(), backend.versions.pick().vectors, {}, {})
        protocol = backend.primary if kind == "grpc" else backend.secondary
        wrong = await protocol._call(mixed, mixed.featurizer.plan([SPAM, PASS]), 2)
        assert wrong[0][0] < 0.5 < wrong[1][0]
        gate.set()
        await wait_for(lambda: backend.current_version == new)
        result = await backend.predict([SPAM, PASS], timeout=2)
        assert result.version == new and result.backend == kind
        assert result.spam_probability[0] > 0.5 > result.spam_probability[1]

    versions = RemoteVersions(str(tfs.model_base), PIN_MODEL, loader=loader)
    breaker = CircuitBreaker(failures=1, cooldown=3600)
    try:
        run(FallbackBackend(config(tfs, PIN_MODEL), versions=versions, breaker=breaker), body)
    finally:
        gate.set()


def flipped(version: int) -> bool:
    """Whether a tiny version of the pin model was built with flip (from its metrics.json)."""
    import json

    return bool(json.loads((shared_standin().model_base / PIN_MODEL / str(version) / layout.ASSETS_DIR
                            / layout.METRICS_FILE).read_text())["flip"])
