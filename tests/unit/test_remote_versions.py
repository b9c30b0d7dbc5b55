"""Which version a remote backend pins, learnt from TF Serving's states and the loaded vectors.

The end-to-end version of "a new version is pinned only after its vectors are loaded" (against
the stand-in, with the flip trick) is in tests/service/test_backends_fallback.py.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from antispam.backends.base import BackendError, NotReady
from antispam.backends.remote_versions import AVAILABLE, END, LOADING, RemoteVersions
from antispam.features import WordVectors
from antispam.versions import VersionAssets, VersionError


class FakeLoader:
    """Loads any version instantly, except those told to fail or to wait for a gate."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.broken: set[int] = set()
        self.gates: dict[int, threading.Event] = {}

    def __call__(self, model_dir: Path, version: int) -> VersionAssets:
        self.calls.append(version)
        if version in self.gates:
            self.gates[version].wait(10)
        if version in self.broken:
            raise VersionError(f"version {version} has unusable assets")
        vectors = WordVectors(["UNK", "x"], [[0.0] * 200, [float(version)] * 200])
        return VersionAssets(version, model_dir / str(version), vectors, {}, {})


def make(loader: FakeLoader) -> RemoteVersions:
    return RemoteVersions("/nowhere", "cnn", loader=loader)


def test_pins_newest_available_version_with_loaded_vectors() -> None:
    loader = FakeLoader()
    versions = make(loader)
    with pytest.raises(NotReady, match="no AVAILABLE"):
        versions.pick()
    asyncio.run(versions.apply({1: AVAILABLE, 2: AVAILABLE, 3: LOADING}))
    assert versions.current == 2 and versions.pick().version == 2
    assert sorted(loader.calls) == [1, 2, 3]  # LOADING versions get their vectors early
    asyncio.run(versions.apply({2: END, 3: AVAILABLE}))
    assert versions.current == 3
    assert [row["version"] for row in versions.status()["versions"]] == [3, 2]
    assert versions.status()["versions"][1] == {"version": 2, "state": END, "vectors": "not loaded"}


def test_a_version_whose_vectors_fail_is_skipped_and_reported() -> None:
    loader = FakeLoader()
    loader.broken.add(2)
    versions = make(loader)
    asyncio.run(versions.apply({1: AVAILABLE, 2: AVAILABLE}))
    assert versions.current == 1
    row = versions.status()["versions"][0]
    # /models shows the error class only; the message (which may hold paths) goes to the log.
    assert row == {"version": 2, "state": AVAILABLE, "vectors": "failed: VersionError"}
    asyncio.run(versions.apply({2: AVAILABLE}))  # the old one is gone: nothing usable
    with pytest.raises(NotReady, match="version 2 is AVAILABLE but unusable"):
        versions.pick()
    loader.broken.clear()
    asyncio.run(versions.apply({2: AVAILABLE}))  # retried on the next refresh
    assert versions.current == 2


def test_forget_stops_pinning_until_the_next_refresh() -> None:
    versions = make(FakeLoader())
    asyncio.run(versions.apply({1: AVAILABLE, 2: AVAILABLE}))
    versions.forget(2)
    assert versions.current == 1


def test_refresh_is_single_flight_and_failures_make_it_not_ready() -> None:
    calls: list[float] = []
    answers: list[object] = [{1: AVAILABLE}, BackendError("down")]

    async def fetch(timeout: float) -> dict[int, str]:
        calls.append(timeout)
        await asyncio.sleep(0.05)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    async def scenario() -> None:
        versions = make(FakeLoader())
        versions.set_fetch(fetch)
        first, second = versions.refresh(), versions.refresh()
        assert first is second
        await first
        assert versions.ready and versions.current == 1 and len(calls) == 1
        assert not await versions.refresh_within(1.0)  # the fetch failed
        assert versions.last_error == "down"
        assert not versions.ready and versions.current == 1  # stale: not ready, still pinnable

    asyncio.run(scenario())


def test_refresh_within_gives_up_waiting_but_the_refresh_goes_on() -> None:
    loader = FakeLoader()
    loader.gates[2] = threading.Event()

    async def fetch(timeout: float) -> dict[int, str]:
        return {1: AVAILABLE, 2: AVAILABLE}

    async def scenario() -> None:
        versions = make(loader)
        versions.set_fetch(fetch)
        assert not await versions.refresh_within(0.1)  # v2's vectors are still loading
        loader.gates[2].set()
        await asyncio.shield(versions.refresh())
        assert versions.current == 2

    asyncio.run(scenario())


def test_poller_refreshes_periodically_and_on_wake() -> None:
    seen: list[int] = []

    async def fetch(timeout: float) -> dict[int, str]:
        seen.append(len(seen) + 1)
        return {len(seen): AVAILABLE}

    async def scenario() -> None:
        versions = make(FakeLoader())
        versions.set_fetch(fetch)
        versions.start_polling(interval=60)
        await asyncio.sleep(0.05)
        assert versions.current == 1
        versions.wake()  # what a NOT_FOUND answer does
        await asyncio.sleep(0.05)
        assert versions.current == 2
        await versions.stop_polling()

    asyncio.run(scenario())
