"""Which versions TF Serving can answer with, and the word vectors to build tensors for each.

A remote backend may only send a tensor to a version whose vectors built it (docs/contracts.md#version-layout), so a
version is usable ("pinnable") when both hold: TF Serving reports it ``AVAILABLE`` and its
``assets.extra`` vectors are loaded here. Vectors are loaded as soon as TF Serving reports a
version at all (``START``/``LOADING``), so they are usually ready by the time the version is
``AVAILABLE``; until they are, requests keep going to the older version. TF Serving's view is
learnt through a ``fetch`` coroutine (gRPC ``GetModelStatus`` or REST ``GET /v1/models/<name>``)
that the owning backend registers; one instance can be shared by the gRPC and REST backends so the
vectors are loaded once.

Nothing here imports TensorFlow: vectors are plain numpy files (:mod:`antispam.features`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from antispam import versions as layout
from antispam.backends.base import BackendError, NotReady
from antispam.features import Windowing
from antispam.versions import VersionAssets, VersionError

log = logging.getLogger(__name__)

# TF Serving's ModelVersionStatus.State names.
UNKNOWN, START, LOADING, AVAILABLE, UNLOADING, END = (
    "UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING", "END")
# States in which a version is, or is about to be, served: worth loading its vectors for.
COMING_OR_SERVED = frozenset({START, LOADING, AVAILABLE})

Fetch = Callable[[float], Awaitable[Mapping[int, str]]]
Loader = Callable[[Path, int], VersionAssets]


class RemoteVersions:
    """TF Serving's version states plus the vectors loaded for them; picks the version to pin."""

    def __init__(self, model_base: str, model_name: str, *, loader: Loader = layout.load_assets,
                 status_timeout: float = 1.0) -> None:
        self.model_name = model_name
        self.model_dir = layout.model_dir(model_base, model_name)
        self.status_timeout = status_timeout
        self._loader = loader
        self._states: dict[int, str] = {}
        self._assets: dict[int, VersionAssets] = {}
        self._failed: dict[int, str] = {}
        self._failed_class: dict[int, str] = {}  # what /models shows: the class, not the message
        self._fetch: Fetch | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._apply_lock = asyncio.Lock()
        self.last_refresh: float | None = None  # time.time() of the last successful refresh
        self.last_error: str | None = None  # why the last refresh failed, None once one succeeds

    # --- what requests use -------------------------------------------------------------------

    @property
    def current(self) -> int | None:
        """Newest version that TF Serving has AVAILABLE and whose vectors are loaded."""
        usable = [v for v, state in self._states.items() if state == AVAILABLE and v in self._assets]
        return max(usable) if usable else None

    @property
    def current_windowing(self) -> Windowing | None:
        """How :attr:`current` reads a text (its ``preprocessing.json``), None without one."""
        version = self.current
        return self._assets[version].windowing if version is not None else None

    def assets_of(self, version: int) -> VersionAssets | None:
        """The loaded assets of ``version`` (None once forgotten or never loaded)."""
        return self._assets.get(version)

    @property
    def ready(self) -> bool:
        """A version is pinnable and TF Serving answered the last refresh (so it is not stale)."""
        return self.current is not None and self.last_error is None

    def pick(self) -> VersionAssets:
        """The assets of :attr:`current`, or :class:`NotReady` saying why there is none."""
        version = self.current
        if version is not None:
            return self._assets[version]
        available = sorted(v for v, s in self._states.items() if s == AVAILABLE)
        if not available:
            reason = self.last_error or "TF Serving reports no AVAILABLE version"
            raise NotReady(f"model {self.model_name!r}: {reason}")
        newest = available[-1]
        why = self._failed.get(newest, "its vectors are still loading")
        raise NotReady(f"model {self.model_name!r} version {newest} is AVAILABLE but unusable here: {why}")

    def forget(self, version: int) -> None:
        """TF Serving said NOT_FOUND for ``version``: stop pinning it until a refresh says otherwise."""
        if self._states.get(version) == AVAILABLE:
            self._states[version] = UNKNOWN
        self.wake()

    # --- learning TF Serving's view ----------------------------------------------------------

    async def apply(self, states: Mapping[int, str]) -> None:
        """Record TF Serving's states, then load vectors for versions it serves or is loading.

        States are recorded first so :meth:`pick` never pins a version TF Serving no longer
        has; a version becomes pinnable only when its vectors finish loading below. Newest
        versions load first. A version whose assets cannot be loaded is logged and skipped (and
        retried on the next refresh, in case its folder was not visible yet).
        """
        async with self._apply_lock:  # a refresh and a direct call must not interleave
            await self._apply(states)

    async def _apply(self, states: Mapping[int, str]) -> None:
        self._states = {int(v): str(s) for v, s in states.items()}
        wanted = {v for v, s in self._states.items() if s in COMING_OR_SERVED}
        for version in sorted(wanted - set(self._assets), reverse=True):
            try:
                assets = await asyncio.to_thread(self._loader, self.model_dir, version)
            except (VersionError, OSError, ValueError) as exc:
                if self._failed.get(version) != str(exc):
                    log.warning("cannot load vectors of %s version %d: %s", self.model_name, version, exc)
                self._failed[version] = str(exc)
                self._failed_class[version] = type(exc).__name__
                continue
            self._assets[version] = assets
            self._failed.pop(version, None)
            log.info("vectors of %s version %d loaded (%d words)", self.model_name, version, len(assets.vectors))
        for version in list(self._assets):
            if version not in wanted:
                del self._assets[version]  # in-flight requests keep their own reference
        for version in list(self._failed):
            if version not in wanted:
                del self._failed[version]

    def set_fetch(self, fetch: Fetch) -> None:
        """Register how to ask TF Serving for its states (``fetch(timeout) -> {version: state}``)."""
        self._fetch = fetch

    def refresh(self) -> asyncio.Task[None]:
        """Start a refresh, or join the one running: callers ``await asyncio.shield(...)`` it."""
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = asyncio.get_running_loop().create_task(self._refresh_once())
            self._refresh_task.add_done_callback(_consume_exception)
        return self._refresh_task

    async def refresh_within(self, timeout: float) -> bool:
        """Refresh, waiting at most ``timeout`` seconds (the refresh itself goes on); True if done."""
        if timeout <= 0:
            return False
        try:
            await asyncio.wait_for(asyncio.shield(self.refresh()), timeout)
        except (BackendError, asyncio.TimeoutError):
            return False
        return True

    async def _refresh_once(self) -> None:
        if self._fetch is None:
            raise RuntimeError("RemoteVersions.set_fetch was not called")
        try:
            states = await self._fetch(self.status_timeout)
        except BackendError as exc:
            if self.last_error != str(exc):
                log.warning("cannot read the versions of %s from TF Serving: %s", self.model_name, exc)
            self.last_error = str(exc)
            raise
        await self.apply(states)
        self.last_refresh = time.time()
        self.last_error = None

    def start_polling(self, interval: float) -> None:
        """Refresh every ``interval`` seconds in the background (and at once when woken)."""
        if self._poll_task is None:
            self._wake = asyncio.Event()
            self._poll_task = asyncio.get_running_loop().create_task(self._poll(interval))

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _poll(self, interval: float) -> None:
        assert self._wake is not None
        while True:
            try:
                await asyncio.shield(self.refresh())
            except BackendError:
                pass  # logged in _refresh_once; try again next round
            except Exception:  # never let the poller die silently
                log.exception("refreshing the versions of %s failed", self.model_name)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except asyncio.TimeoutError:
                pass

    async def stop_polling(self) -> None:
        for task in (self._poll_task, self._refresh_task):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._poll_task = None

    def status(self) -> dict[str, Any]:
        """Versions TF Serving reports, their state and whether their vectors are loaded here."""
        rows = []
        for version in sorted(set(self._states) | set(self._assets), reverse=True):
            if version in self._assets:
                vectors = "loaded"
            elif version in self._failed:
                vectors = f"failed: {self._failed_class.get(version, 'error')}"
            else:
                vectors = "not loaded"
            row: dict[str, Any] = {"version": version, "state": self._states.get(version, UNKNOWN),
                                   "vectors": vectors}
            if version in self._assets:
                row.update(self._assets[version].decision_status())
            rows.append(row)
        return {
            "model": self.model_name,
            "current_version": self.current,
            "versions": rows,
            "last_refresh": self.last_refresh,
            "last_error": self.last_error,
        }


def _consume_exception(task: asyncio.Task[None]) -> None:
    """Mark a refresh's exception as seen: it was logged, and nobody may be awaiting it."""
    if not task.cancelled():
        task.exception()
