"""Prometheus metrics of one application instance.

Each app gets its own ``CollectorRegistry`` (never the global default), so several apps in one
test process do not share counters and a worker's ``/metrics`` shows only its own numbers.
Values that already live elsewhere (served model version, readiness, cache counters) are read
at scrape time by small collectors instead of being copied into gauges on every change.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # pragma: no cover
    from antispam.backends.base import Backend
    from antispam.cache import PredictionCache
    from antispam.campaigns import CampaignTracker
    from antispam.decisions import DecisionLog
    from antispam.keys import KeyRing

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
