"""What the handlers of one application share (:class:`Services`), and the drain at shutdown."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from antispam.backends.base import Backend
from antispam.cache import PredictionCache
from antispam.config import ServeConfig
from antispam.decisions import DecisionLog, DecisionStorage
from antispam.keys import KeyRing, TokenBuckets
from antispam.metrics import Metrics
from antispam.ratelimit import RateLimiter
from antispam.scoring import Scorer


class FeedbackWriter(Protocol):
    """What ``POST /feedback`` needs of a feedback store (:class:`antispam.feedback.FeedbackStore`
    is one; the tests' fake is another)."""

    def add(self, text: str, normalized: str, label: int, model_version: int | None = None, *,
            key_id: str = ..., request_id: str | None = None, data_id: str | None = None) -> dict[str, Any]:
        """Store one verdict; ``key_id`` is given only when keys are on."""


@dataclass
class Services:
    """Everything a handler may use; one per application."""

    config: ServeConfig
    backend: Backend
    scorer: Scorer
    cache: PredictionCache
    metrics: Metrics
    feedback_store: FeedbackWriter | None
    openapi: bytes
    inflight: int = 0
    draining: bool = False
    idle: asyncio.Event | None = field(default=None, repr=False)
    keyring: KeyRing | None = None  # issue 11: None = keys off, every route open
    # Issue 21: peers whose X-Forwarded-For / X-Real-Ip name the client (--trusted-proxy).
    trusted_proxies: tuple[Any, ...] = ()
    buckets: RateLimiter = field(default_factory=TokenBuckets, repr=False)  # issue 23: or Redis
    # Issue 23: the decision log's writer (None: off, or no store) and the store it reads back
    # from (GET /decisions, appeals; set whenever the feedback store keeps decisions).
    decisions: DecisionLog | None = field(default=None, repr=False)
    decision_store: DecisionStorage | None = field(default=None, repr=False)
    # Issue 23: the review queue in the feedback store's database (antispam.review) and the sender
    # of appeal callbacks (antispam.callbacks); None without a feedback store.
    review: Any = field(default=None, repr=False)
    callbacks: Any = field(default=None, repr=False)

    def request_started(self) -> None:
        self.inflight += 1

    def request_finished(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self.idle is not None:
            self.idle.set()

    async def drain(self, timeout: float) -> bool:
        """Refuse new requests and wait for the ones in flight; False if time ran out."""
        self.draining = True
        if self.inflight == 0:
            return True
        self.idle = asyncio.Event()
        try:
            await asyncio.wait_for(self.idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
