"""What the gRPC and REST backends share: the request flow, the errors, the answer checks.

The flow (docs/contracts.md): pick the newest version TF Serving has AVAILABLE *and* whose
vectors are loaded here, build the rows of every text with that version's vectors and windowing
(one ``[rows, 20, 200]`` batch), send it pinned to that version, check the answer before
trusting it, and fold the rows back into one score per text as that version was trained to. If
TF Serving says the pinned version is gone (it unloaded it between our last refresh and this
request), refresh the version list and try once more with the new pick, within the same
deadline.

Errors are split by what the caller should do next:

* :class:`Unreachable` (and :class:`UnreachableDeadline`): the server could not be reached or
  did not answer in time — the fallback backend tries the other protocol and counts it against
  the circuit breaker.
* :class:`VersionGone`: the pinned version is not served (handled here by refresh-and-retry).
* :class:`BadResponse`: the server answered something we cannot trust (wrong shape, dtype,
  version, NaN, malformed body). Never a crash, never a guessed verdict.
* any other :class:`~antispam.backends.base.BackendError`: the server answered with an error.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import abc
import asyncio
from typing import Any, Mapping, Sequence

import numpy as np

from antispam.backends.base import Backend, BackendError, BatchResult, DeadlineExceeded, Overloaded
from antispam.backends.remote_versions import RemoteVersions
from antispam.config import ServeConfig
from antispam.features import Plan, Windowing
from antispam.versions import VersionAssets


class Unreachable(BackendError):
    """Connection refused or reset, server unavailable: worth trying the other protocol."""

    code = "backend_unreachable"


class UnreachableDeadline(Unreachable, DeadlineExceeded):
    """The call's own deadline passed without an answer."""

    code = "deadline_exceeded"


class VersionGone(BackendError):
    """TF Serving answered NOT_FOUND for the pinned version."""

    code = "version_not_found"


class BadResponse(BackendError):
    """The server answered, but not with probabilities we can trust."""

    code = "bad_backend_response"


def checked_probabilities(probabilities: Any, n: int) -> np.ndarray:
    """Check a ``[n, 2]`` probability matrix from TF Serving; float64, clipped to [0, 1]."""
    try:
        probs = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BadResponse(f"probabilities are not numbers: {exc}") from exc
    if probs.shape != (n, 2):
        raise BadResponse(f"probabilities have shape {list(probs.shape)}, expected [{n}, 2]")
    if not np.all(np.isfinite(probs)):
        raise BadResponse("probabilities contain NaN or infinity")
    if probs.size and (probs.min() < -1e-6 or probs.max() > 1 + 1e-6):
        raise BadResponse(f"probabilities outside [0, 1]: {probs.min():.4g} .. {probs.max():.4g}")
    return np.clip(probs, 0.0, 1.0)


def admit(backend: Any, texts: int) -> None:
    """Shed load when ``config.max_queue`` texts already wait for TF Serving.

    A stalled TF Serving would otherwise hold every request until its deadline, and requests
    pile up without bound; past the limit a request fails at once with :class:`Overloaded`
    (503). A single batch is always admitted when nothing else is in flight.
    """
    limit = backend.config.max_queue
    if backend.in_flight and backend.in_flight + texts > limit:
        raise Overloaded(f"{backend.in_flight} texts already wait for TF Serving (limit {limit})")


class RemoteBackend(Backend):
    """Base of the TF Serving backends; subclasses implement the wire protocol only.

    Public counters (plain ints, for metrics): ``requests`` answered, ``errors`` raised,
    ``version_retries`` (NOT_FOUND for a pinned version, answered after a refresh or not),
    ``in_flight`` texts waiting for TF Serving now (at most ``config.max_queue``, see :func:`admit`).
    """

    name = "remote"

    def __init__(self, config: ServeConfig, *, versions: RemoteVersions | None = None,
                 poll: bool | None = None) -> None:
        self.config = config
        self.model_name = config.model_name
        # A shared RemoteVersions belongs to whoever created it (the fallback); it polls.
        self.owns_versions = versions is None
        self.versions = versions or RemoteVersions(config.model_base, config.model_name)
        self.poll = self.owns_versions if poll is None else poll
        self.requests = 0
        self.errors = 0
        self.version_retries = 0
        self.in_flight = 0
        self._started = False

    # --- protocol, implemented by subclasses -------------------------------------------------

    @abc.abstractmethod
    async def _open(self) -> None:
        """Create the persistent channel / client (inside the running event loop)."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Release what :meth:`_open` created."""

    @abc.abstractmethod
    async def _call(self, assets: VersionAssets, plan: Plan, timeout: float) -> np.ndarray:
        """Encode the rows of ``plan`` with ``assets.vectors``, send them pinned to
        ``assets.version``, and return the ``probabilities`` array as received."""

    @abc.abstractmethod
    async def fetch_states(self, timeout: float) -> Mapping[int, str]:
        """TF Serving's ``{version: state}`` for the model ({} if it knows none yet)."""

    @abc.abstractmethod
    def target(self) -> str:
        """Where this backend sends requests, for status pages and messages."""

    # --- Backend -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._open()
        self._started = True
        if self.owns_versions:
            self.versions.set_fetch(self.fetch_states)
        if self.poll:
            # One bounded first look so a healthy server is ready at once; failures are fine
            # (the poller keeps trying and readiness says so).
            await self.versions.refresh_within(self.versions.status_timeout + 0.5)
            self.versions.start_polling(self.config.poll_seconds)

    async def close(self) -> None:
        if self.poll:
            await self.versions.stop_polling()
        if self._started:
            self._started = False
            await self._close()

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

    async def predict(self, batch: Sequence[Sequence[str]], timeout: float) -> BatchResult:
        admit(self, len(batch))
        self.in_flight += len(batch)
        try:
            result = await self._predict(batch, timeout)
        except BackendError:
            self.errors += 1
            raise
        finally:
            self.in_flight -= len(batch)
        self.requests += 1
        return result

    async def _predict(self, batch: Sequence[Sequence[str]], timeout: float) -> BatchResult:
        if not self._started:
            raise BackendError(f"{self.name} backend used before start()")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for attempt in (1, 2):
            assets = self.versions.pick()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DeadlineExceeded(f"{self.name}: deadline passed before the call")
            if not batch:
                return BatchResult(np.zeros(0), self.model_name, assets.version, self.name)
            plan = assets.featurizer.plan(batch)
            try:
                probabilities = await self._call(assets, plan, remaining)
            except VersionGone:
                self.versions.forget(assets.version)
                self.version_retries += 1
                if attempt == 2:
                    raise
                await self.versions.refresh_within(deadline - loop.time())
                continue
            spam = plan.fold(checked_probabilities(probabilities, len(plan.ids)))
            return BatchResult(spam, self.model_name, assets.version, self.name,
                               scored_tokens=plan.scored)
        raise AssertionError("unreachable")  # pragma: no cover

    def status(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "target": self.target(),
            **self.versions.status(),
            "requests": self.requests,
            "errors": self.errors,
            "in_flight": self.in_flight,
        }
