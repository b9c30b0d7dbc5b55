"""gRPC first, REST when gRPC does not answer, both within one deadline.

A request tries gRPC with a share of its deadline (``grpc_share``, 60 % by default), so that a
gRPC call that hangs still leaves REST time to answer; a gRPC call that fails fast (connection
refused, UNAVAILABLE) leaves REST nearly all of it. Only "no answer" errors (see
:class:`antispam.backends.remote.Unreachable`) move a request to REST: an error *answer* from gRPC
(bad input, no such version after a refresh, a malformed response) would be the same over REST.
A :class:`~antispam.backends.breaker.CircuitBreaker` stops trying gRPC after repeated failures
and lets one trial through after its cool-down. If REST fails too, the request fails with a
:class:`~antispam.backends.base.BackendError` naming both causes before the deadline.

Both protocols share one :class:`~antispam.backends.remote_versions.RemoteVersions` (vectors
are loaded once); this class polls TF Serving for versions, over gRPC when the breaker allows,
else over REST, and the poller's gRPC probes count for the breaker too, so gRPC resumes after an
outage even without traffic.

Counters for metrics (plain attributes, read them any time):

* ``fallbacks`` — requests answered by REST (gRPC failed or the breaker was open);
* ``grpc_failures`` — gRPC transport failures (requests and status probes);
* ``failures`` — requests neither protocol answered;
* ``answered`` — ``{"grpc": n, "rest": m}`` requests answered by each;
* ``in_flight`` — texts waiting for TF Serving now; past ``config.max_queue`` requests are shed
  at once with :class:`~antispam.backends.base.Overloaded` (503) instead of piling up;
* ``breaker_state`` — ``"closed"``, ``"open"`` or ``"half_open"``; ``breaker.opens`` counts
  how often it opened.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping, Sequence

from antispam.backends.base import Backend, BackendError, BatchResult, DeadlineExceeded
from antispam.backends.breaker import CircuitBreaker
from antispam.backends.grpc import GrpcBackend
from antispam.backends.remote import RemoteBackend, Unreachable, admit
from antispam.backends.remote_versions import RemoteVersions
from antispam.backends.rest import RestBackend
from antispam.config import ServeConfig
from antispam.features import Windowing
from antispam.versions import VersionAssets

log = logging.getLogger(__name__)

GRPC_SHARE = 0.6


class FallbackBackend(Backend):
    name = "grpc+rest"

    def __init__(self, config: ServeConfig, *, primary: RemoteBackend | None = None,
                 secondary: RemoteBackend | None = None, breaker: CircuitBreaker | None = None,
                 versions: RemoteVersions | None = None, grpc_share: float = GRPC_SHARE) -> None:
        if not 0 < grpc_share <= 1:
            raise ValueError("grpc_share must be in (0, 1]")
        self.config = config
        self.versions = versions or RemoteVersions(config.model_base, config.model_name)
        self.primary = primary or GrpcBackend(config, versions=self.versions, poll=False)
        self.secondary = secondary or RestBackend(config, versions=self.versions, poll=False)
        self.breaker = breaker or CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s)
        self.grpc_share = grpc_share
        self.fallbacks = 0
        self.grpc_failures = 0
        self.failures = 0
        self.answered = {self.primary.name: 0, self.secondary.name: 0}
        self.in_flight = 0
        self._started = False

    @property
    def breaker_state(self) -> str:
        return self.breaker.state

    async def start(self) -> None:
        await self.primary.start()
        await self.secondary.start()
        self._started = True
        self.versions.set_fetch(self.fetch_states)
        await self.versions.refresh_within(2 * self.versions.status_timeout + 0.5)
        self.versions.start_polling(self.config.poll_seconds)

    async def close(self) -> None:
        await self.versions.stop_polling()
        await self.primary.close()
        await self.secondary.close()
        self._started = False

    @property
    def ready(self) -> bool:
        return self._started and self.versions.ready

    @property
    def current_version(self) -> int | None:
        return self.versions.current

    @property
    def current_windowing(self) -> Windowing | None:
        return self.versions.current_windowing

    def version_assets(self, version: int) -> VersionAssets | None:
        return self.versions.assets_of(version)

    async def fetch_states(self, timeout: float) -> Mapping[int, str]:
        """TF Serving's versions over gRPC if the breaker allows, else (or on failure) REST."""
        if self.breaker.allow():
            try:
                states = await self.primary.fetch_states(timeout)
            except Unreachable as exc:
                self._grpc_failed(exc)
            except BackendError:
                self.breaker.success()  # it answered; REST may parse better
            except BaseException:
                self.breaker.release()
                raise
            else:
                self.breaker.success()
                return states
        return await self.secondary.fetch_states(timeout)

    def _grpc_failed(self, exc: BaseException) -> None:
        self.grpc_failures += 1
        self.breaker.failure()
        log.debug("gRPC failed, trying REST: %s", exc)

    async def predict(self, batch: Sequence[Sequence[str]], timeout: float) -> BatchResult:
        admit(self, len(batch))
        self.in_flight += len(batch)
        try:
            return await self._predict(batch, timeout)
        finally:
            self.in_flight -= len(batch)

    async def _predict(self, batch: Sequence[Sequence[str]], timeout: float) -> BatchResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        reason: str
        if self.breaker.allow():
            try:
                result = await self.primary.predict(batch, timeout * self.grpc_share)
            except Unreachable as exc:
                self._grpc_failed(exc)
                reason = str(exc)
            except BackendError:
                self.breaker.success()
                self.failures += 1
                raise
            except BaseException:
                self.breaker.release()
                raise
            else:
                self.breaker.success()
                self.answered[self.primary.name] += 1
                return result
        else:
            reason = f"circuit {self.breaker.state}: gRPC skipped"
        remaining = deadline - loop.time()
        try:
            if remaining <= 0:
                raise DeadlineExceeded("no time left for REST")
            result = await self.secondary.predict(batch, remaining)
        except BackendError as exc:
            self.failures += 1
            kind = DeadlineExceeded if isinstance(exc, DeadlineExceeded) else BackendError
            raise kind(f"TF Serving did not answer: gRPC: {reason}; REST: {exc}") from exc
        self.fallbacks += 1
        self.answered[self.secondary.name] += 1
        result.extra["fallback"] = True  # the app counts these (antispam_backend_fallbacks)
        result.extra["fallback_reason"] = reason
        return result

    def status(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "grpc": self.primary.target(),
            "rest": self.secondary.target(),
            **self.versions.status(),
            "breaker": self.breaker.status(),
            "fallbacks": self.fallbacks,
            "grpc_failures": self.grpc_failures,
            "failures": self.failures,
            "answered": dict(self.answered),
            "in_flight": self.in_flight,
        }
