"""Prometheus metrics of one application instance.

Each app gets its own ``CollectorRegistry`` (never the global default), so several apps in one
test process do not share counters and a worker's ``/metrics`` shows only its own numbers.
Values that already live elsewhere (served model version, readiness, cache counters) are read
at scrape time by small collectors instead of being copied into gauges on every change.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # pragma: no cover
    from antispam.backends.base import Backend
    from antispam.cache import PredictionCache
    from antispam.callbacks import CallbackSender
    from antispam.campaigns import CampaignTracker
    from antispam.decisions import DecisionLog
    from antispam.keys import KeyRing
    from antispam.review import QueueDepth, ReviewQueue

log = logging.getLogger(__name__)

# Label values a client can influence come from fixed sets, so /metrics cannot be grown by
# requests with made-up methods (``curl -X FOOBAR1``): anything else is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
ROUTES = frozenset({"predict", "feedback", "healthz", "readyz", "models", "metrics", "openapi",
                    "console", "lists", "decisions", "review", "appeals", "not_found"})
OTHER = "other"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _BackendCollector(Collector):
    def __init__(self, backend: "Backend", model_name: str) -> None:
        self.backend = backend
        self.model_name = model_name

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        version = GaugeMetricFamily("antispam_model_version",
                                    "model version new requests go to (-1: none loaded)",
                                    labels=["model", "backend"])
        current = self.backend.current_version
        version.add_metric([self.model_name, self.backend.name], -1 if current is None else current)
        yield version
        ready = GaugeMetricFamily("antispam_ready", "1 when a model version can answer",
                                  labels=["backend"])
        ready.add_metric([self.backend.name], 1.0 if self.backend.ready else 0.0)
        yield ready
        degraded = GaugeMetricFamily("antispam_degraded",
                                     "1 when a version serves but /readyz says degraded (its folder "
                                     "is gone, or the newest version failed to load)",
                                     labels=["backend"])
        degraded.add_metric([self.backend.name], 1.0 if self.backend.degraded else 0.0)
        yield degraded
        failures = CounterMetricFamily("antispam_model_load_failures",
                                       "failed loads of a model version (versions on disk only)",
                                       labels=["model", "version"])
        for number, count in sorted(self.backend.load_failures().items()):
            failures.add_metric([self.model_name, str(number)], count)
        yield failures


class _CacheCollector(Collector):
    def __init__(self, cache: "PredictionCache") -> None:
        self.cache = cache

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        c = self.cache
        yield CounterMetricFamily("antispam_cache_hits", "texts answered from the dedup cache",
                                  value=c.hits)
        yield CounterMetricFamily("antispam_cache_misses", "texts the dedup cache did not hold",
                                  value=c.misses)
        yield CounterMetricFamily("antispam_cache_invalidations",
                                  "times a model version switch emptied the cache",
                                  value=c.invalidations)
        yield GaugeMetricFamily("antispam_cache_hit_ratio", "hits / (hits + misses) since start",
                                value=c.hit_ratio)
        yield GaugeMetricFamily("antispam_cache_entries", "entries in the dedup cache",
                                value=len(c))


class _DecisionLogCollector(Collector):
    """Issue 23: the decision log's writer (antispam/decisions.py): what it stored, what it
    dropped and why, and how full its queue is. Read at scrape time from the log's counters."""

    def __init__(self, log: "DecisionLog") -> None:
        self.log = log

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        dropped = CounterMetricFamily("antispam_decisions_dropped",
                                      "decisions the log did not store, by reason (queue_full: the writer "
                                      "fell behind; store_error: the store failed; shutdown: still queued "
                                      "when the process stopped)", labels=["reason"])
        for reason, count in sorted(self.log.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield CounterMetricFamily("antispam_decisions_written", "decisions stored by the decision log",
                                  value=self.log.written)
        yield GaugeMetricFamily("antispam_decision_queue_depth", "decisions waiting for the log's writer",
                                value=self.log.depth)
        yield GaugeMetricFamily("antispam_decision_queue_size", "room in the decision log's queue",
                                value=self.log.queue_size)


class _KeysCollector(Collector):
    """Issue 21: whether the API keys file can be used (keys on only). Read at scrape time, after
    a poll of the file, so an invalid file shows even when no keyed request came in."""

    def __init__(self, keyring: "KeyRing") -> None:
        self.keyring = keyring

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        self.keyring.refresh()
        yield GaugeMetricFamily("antispam_keys_file_valid",
                                "1 when the API keys file is valid; 0: no key authenticates (fail closed)",
                                value=1.0 if self.keyring.valid else 0.0)
        yield CounterMetricFamily("antispam_keys_file_errors",
                                  "reloads of the API keys file that found it invalid",
                                  value=self.keyring.errors)


class _CampaignsCollector(Collector):
    """Issue 24: campaigns over the threshold now (Redis: every process's, one read at scrape
    time). Left out of the scrape while the shared tracker fails closed."""

    def __init__(self, tracker: "CampaignTracker") -> None:
        self.tracker = tracker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from antispam.campaigns import TrackerUnavailable

        try:
            active = self.tracker.active()
        except TrackerUnavailable:
            return
        yield GaugeMetricFamily("antispam_campaigns_active",
                                "near-duplicate clusters and shared contacts over the campaign threshold "
                                "of distinct senders in the window now", value=active)


REVIEW_SAMPLE_SECONDS = 10.0  # the review queue gauges read the store at most this often
REVIEW_SAMPLE_WAIT_SECONDS = 2.0  # a scrape waits at most this long for a fresh sample


class ReviewQueueSampler:
    """Issue 23: the review queue's depth by source, read from the store for /metrics at most
    every :data:`REVIEW_SAMPLE_SECONDS` (one grouped query over the queued rows,
    :meth:`antispam.review.ReviewQueue.queued`), on the executor, never on the event loop.

    ``refresh()`` is awaited by the /metrics handler before it renders: when the last sample is
    older than the interval it starts one read (concurrent scrapes share it) and waits for it at
    most ``wait`` seconds; a slower store answers the next scrape. A failed read (store down)
    counts an error and leaves no sample, so the gauges disappear instead of showing stale
    numbers; the next read is tried only after the interval, so a dead store costs one attempt
    per interval, not one per scrape. The oldest item's age is computed at scrape time from the
    sampled enqueue time, so it keeps growing between samples."""

    def __init__(self, queue: "ReviewQueue", *, interval: float = REVIEW_SAMPLE_SECONDS,
                 wait: float = REVIEW_SAMPLE_WAIT_SECONDS) -> None:
        self.queue = queue
        self.interval = interval
        self.wait = wait
        self.depths: dict[str, "QueueDepth"] | None = None
        self.errors = 0
        self.reads = 0
        self._read_at = -float("inf")  # monotonic time the last read started
        self._pending: asyncio.Future[None] | None = None

    def _read(self) -> None:
        try:
            depths = self.queue.queued()
        except Exception as exc:  # noqa: BLE001 - a scrape never fails because the store does
            self.errors += 1
            self.depths = None
            log.warning("review queue metrics: %s: %s", type(exc).__name__, exc)
            return
        self.depths = depths

    async def refresh(self) -> None:
        loop = asyncio.get_running_loop()
        if self._pending is None or self._pending.done():
            if time.monotonic() - self._read_at < self.interval:
                return
            self._read_at = time.monotonic()
            self.reads += 1
            self._pending = loop.run_in_executor(None, self._read)
        try:
            await asyncio.wait_for(asyncio.shield(self._pending), self.wait)
        except asyncio.TimeoutError:
            pass


class _ReviewCollector(Collector):
    """Issue 23: the review queue (sampled from the shared store: every process reports the same
    depth, so aggregate with max, not sum), this process's verdicts are counted by the review
    route itself (:attr:`Metrics.review_verdicts`), and this process's appeal callbacks (the
    sender's counters)."""

    def __init__(self, sampler: ReviewQueueSampler, sender: "CallbackSender | None", listener: Any = None) -> None:
        self.sampler = sampler
        self.sender = sender
        self.listener = listener  # antispam.review.review_listener's function (its counters), or None

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        depths = self.sampler.depths
        if depths is not None:
            now = time.time()
            depth = GaugeMetricFamily("antispam_review_queue_depth",
                                      "review items waiting for a moderator, by source (review: the model "
                                      "asked; appeal: a caller appealed a block); the whole queue, sampled "
                                      "from the store at most every 10 s", labels=["source"])
            oldest = GaugeMetricFamily("antispam_review_queue_oldest_age_seconds",
                                       "age of the oldest waiting review item, by source (0 when none)",
                                       labels=["source"])
            leased = GaugeMetricFamily("antispam_review_queue_leased",
                                       "waiting review items a moderator holds a lease on now, by source",
                                       labels=["source"])
            for source, d in sorted(depths.items()):
                depth.add_metric([source], d.depth)
                oldest.add_metric([source], 0.0 if d.oldest_enqueued_at is None
                                  else max(0.0, now - d.oldest_enqueued_at))
                leased.add_metric([source], d.leased)
            yield depth
            yield oldest
            yield leased
        yield CounterMetricFamily("antispam_review_queue_sample_errors",
                                  "reads of the review queue's depth for these gauges that failed (store down)",
                                  value=self.sampler.errors)
        if self.listener is not None:
            entered = CounterMetricFamily("antispam_review_listener_decisions",
                                          "review decisions this process's decision log handed the queue, by "
                                          "outcome (queued; without_text: the log kept no text, not queued; "
                                          "failed: the enqueue failed, store down, not retried)", labels=["outcome"])
            for outcome, attribute in (("queued", "enqueued"), ("without_text", "without_text"), ("failed", "failed")):
                entered.add_metric([outcome], getattr(self.listener, attribute, 0))
            yield entered
        if self.sender is not None:
            callbacks = CounterMetricFamily("antispam_appeal_callbacks",
                                            "appeal outcome callbacks this process posted, by outcome (delivered: "
                                            "2xx; retried: failed, sent again later; failed: given up)",
                                            labels=["outcome"])
            callbacks.add_metric(["delivered"], self.sender.sent)
            callbacks.add_metric(["retried"], self.sender.retried)
            callbacks.add_metric(["failed"], self.sender.failed)
            yield callbacks


class Metrics:
    """The counters and histograms the HTTP layer updates, in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("antispam_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("antispam_request_duration_seconds",
                                 "HTTP request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.backend_used = Counter("antispam_backend_requests",
                                    "predict requests by the backend that answered them "
                                    "(cache: every text came from the dedup cache)",
                                    ["backend"], registry=r)
        self.backend_errors = Counter("antispam_backend_errors",
                                      "predict requests that failed in the backend, by error code",
                                      ["code"], registry=r)
        self.fallbacks = Counter("antispam_backend_fallbacks",
                                 "backend calls answered by a fallback (e.g. REST after gRPC failed)",
                                 registry=r)
        self.request_texts = Histogram("antispam_request_texts", "texts per predict request",
                                       buckets=BATCH_BUCKETS, registry=r)
        self.batch_texts = Histogram("antispam_model_batch_texts",
                                     "texts per model call (micro-batches in the local backend)",
                                     buckets=BATCH_BUCKETS, registry=r)
        self.verdicts = Counter("antispam_verdicts", "texts answered by /predict, by suggestion "
                                "(block, review, pass)", ["suggestion"], registry=r)
        self._verdicts = {s: self.verdicts.labels(s) for s in ("block", "review", "pass")}  # exposed at 0
        # Policies come from the policies file and the other labels are fixed words, so the
        # series are bounded (a request naming an unknown policy is refused before this).
        self.decisions = Counter("antispam_decisions",
                                 "texts answered, by policy, by what decided (model, block_list, allow_list, "
                                 "contact_escalation, campaign) and by suggestion",
                                 ["policy", "decided_by", "suggestion"], registry=r)

        self.campaign_items = Counter("antispam_campaign_items",
                                      "texts answered with campaign evidence, by what made the campaign "
                                      "(text: near-duplicates, contact: a shared contact) and by suggestion",
                                      ["by", "suggestion"], registry=r)

        self.review_verdicts = Counter("antispam_review_verdicts",
                                       "moderators' verdicts stored by this process, by the item's source "
                                       "(review, appeal) and verdict (spam, pass)", ["source", "verdict"],
                                       registry=r)
        for source in ("review", "appeal"):  # exposed at 0
            for verdict in ("spam", "pass"):
                self.review_verdicts.labels(source, verdict)
        self._review: ReviewQueueSampler | None = None

        # Labelled children by their label values: ``labels()`` costs a lock and a dict lookup
        # behind several checks (~2 µs); every request takes three of them (issue 14). The label
        # sets are bounded (routes, methods and statuses, policies), so are these dicts.
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (str(id(metric)), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe_decision(self, policy: str, decided_by: str, suggestion: str) -> None:
        self._child(self.decisions, policy, decided_by, suggestion).inc()

    def observe_campaign_item(self, by: str, suggestion: str) -> None:
        self._child(self.campaign_items, by, suggestion).inc()

    def watch_campaigns(self, tracker: "CampaignTracker") -> None:
        self.registry.register(_CampaignsCollector(tracker))

    def watch_backend(self, backend: "Backend", model_name: str) -> None:
        self.registry.register(_BackendCollector(backend, model_name))

    def watch_cache(self, cache: "PredictionCache") -> None:
        self.registry.register(_CacheCollector(cache))

    def watch_decisions(self, log: "DecisionLog") -> None:
        self.registry.register(_DecisionLogCollector(log))

    def watch_review(self, queue: "ReviewQueue", sender: "CallbackSender | None", listener: Any = None) -> None:
        self._review = ReviewQueueSampler(queue)
        self.registry.register(_ReviewCollector(self._review, sender, listener))

    def observe_review_verdict(self, source: str, verdict: str) -> None:
        if source in ("review", "appeal") and verdict in ("spam", "pass"):
            self._child(self.review_verdicts, source, verdict).inc()

    async def refresh(self) -> None:
        """Before a scrape: the values read from a store (the review queue), off the event loop."""
        if self._review is not None:
            await self._review.refresh()

    def watch_keys(self, keyring: "KeyRing") -> None:
        self.registry.register(_KeysCollector(keyring))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        route = route if route in ROUTES else OTHER
        method = method if method in METHODS else OTHER
        self._child(self.requests, route, method, str(status)).inc()
        self._child(self.latency, route).observe(seconds)

    def observe_batch(self, size: int) -> None:
        self.batch_texts.observe(size)

    def observe_verdicts(self, suggestions: Iterable[str]) -> None:
        for suggestion, count in collections.Counter(suggestions).items():
            child = self._verdicts.get(suggestion) or self.verdicts.labels(suggestion)
            child.inc(count)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
