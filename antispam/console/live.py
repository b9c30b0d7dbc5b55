"""The console's Live view: what the service did in the last minutes, from its own metrics.

:class:`LiveStats` keeps a ring buffer of snapshots of the app's Prometheus registry, one every
10 seconds, taken by a timer on the app's event loop (no thread; the timer holds the stats only
through a weak reference, so it ends with the app, and at the latest with the loop). A summary is
the difference between a fresh snapshot and the oldest one inside the window asked for: request
rate, p50/p99 latency of ``/predict`` (interpolated inside the histogram buckets, as Prometheus'
``histogram_quantile`` does), verdict mix, cache hit rate, fallbacks and errors.

Numbers are per process: with ``--workers N`` a request reaches one worker, and so does the
console's. Except (issue 23) when the decision log is in a shared store (PostgreSQL): then the
verdict mix and the request and text rates are counted over every process and replica from the
log (:func:`shared_window`, read by the console's handler), and the summary says which source it
used; latency stays this process's (the log holds no timings), labelled with its pid.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from prometheus_client import CollectorRegistry

INTERVAL_SECONDS = 10.0
KEEP_SECONDS = 600.0  # ten minutes of snapshots
MAX_MINUTES = KEEP_SECONDS / 60.0

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]


@dataclass(frozen=True)
class Snapshot:
    at: float  # time.monotonic()
    wall: float  # time.time(), for the browser's clock
    values: Mapping[Key, float]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, lab), v in self.values.items() if n == name and wanted <= set(lab))

    def by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        """Samples called ``name`` summed per value of ``label``."""
        wanted = set(labels.items())
        out: dict[str, float] = {}
        for (n, lab), v in self.values.items():
            if n != name or not wanted <= set(lab):
                continue
            key = dict(lab).get(label)
            if key is not None:
                out[key] = out.get(key, 0.0) + v
        return out


def take_snapshot(registry: CollectorRegistry, at: float, wall: float) -> Snapshot:
    values: dict[Key, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            key = (sample.name, tuple(sorted(sample.labels.items())))
            values[key] = values.get(key, 0.0) + float(sample.value)
    return Snapshot(at, wall, values)


def histogram_quantile(q: float, buckets: Mapping[str, float]) -> tuple[float | None, bool]:
    """The ``q`` quantile from cumulative bucket counts ``{le: count}`` (``le`` as Prometheus
    writes it, ``"+Inf"`` included), linear inside a bucket.

    Returns ``(value, above)``: ``value`` is None without observations; ``above`` is True when
    the quantile falls in the ``+Inf`` bucket, and ``value`` is then the largest finite bound.
    """
    bounds = sorted((float(le), count) for le, count in buckets.items())
    if not bounds or bounds[-1][1] <= 0:
        return None, False
    total = bounds[-1][1]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in bounds:
        if count >= rank and count > previous_count:
            if math.isinf(bound):
                return previous_bound, True
            share = (rank - previous_count) / (count - previous_count)
            return previous_bound + (bound - previous_bound) * share, False
        if not math.isinf(bound):
            previous_bound = bound
        previous_count = count
    return previous_bound, True


def _delta(new: Mapping[str, float], old: Mapping[str, float]) -> dict[str, float]:
    return {k: v - old.get(k, 0.0) for k, v in new.items() if v - old.get(k, 0.0) > 0}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


def _rate(count: float, seconds: float) -> float | None:
    return round(count / seconds, 4) if seconds >= 1.0 else None  # a rate over less is noise


def _ints(values: Mapping[str, float]) -> dict[str, int]:
    return {k: int(round(v)) for k, v in sorted(values.items())}


def compare(new: Snapshot, old: Snapshot) -> dict[str, Any]:
    """What happened between two snapshots of one registry."""
    seconds = max(new.at - old.at, 0.0)
    routes = _delta(new.by("antispam_requests_total", "route"), old.by("antispam_requests_total", "route"))
    statuses = _delta(new.by("antispam_requests_total", "status"), old.by("antispam_requests_total", "status"))
    predict = routes.get("predict", 0.0)
    before = old.by("antispam_request_duration_seconds_bucket", "le", route="predict")
    buckets = {le: count - before.get(le, 0.0)
               for le, count in new.by("antispam_request_duration_seconds_bucket", "le", route="predict").items()}
    p50, p50_above = histogram_quantile(0.5, buckets)
    p99, p99_above = histogram_quantile(0.99, buckets)
    verdicts = _delta(new.by("antispam_verdicts_total", "suggestion"), old.by("antispam_verdicts_total", "suggestion"))
    hits = new.total("antispam_cache_hits_total") - old.total("antispam_cache_hits_total")
    misses = new.total("antispam_cache_misses_total") - old.total("antispam_cache_misses_total")
    texts = new.total("antispam_request_texts_sum") - old.total("antispam_request_texts_sum")
    server_errors = sum(v for status, v in statuses.items() if status.startswith("5"))
    client_errors = sum(v for status, v in statuses.items() if status.startswith("4"))
    return {
        "seconds": round(seconds, 3),
        "requests": int(sum(routes.values())),
        "requests_per_second": _rate(sum(routes.values()), seconds),
        "by_route": _ints(routes),
        "by_status": _ints(statuses),
        "predict": {
            "requests": int(predict),
            "requests_per_second": _rate(predict, seconds),
            "texts": int(texts),
            "texts_per_second": _rate(texts, seconds),
            "latency_ms": {"p50": _ms(p50), "p99": _ms(p99), "p50_above_buckets": p50_above,
                           "p99_above_buckets": p99_above},
        },
        "verdicts": _ints(verdicts),
        "cache": {"hits": int(hits), "misses": int(misses),
                  "hit_rate": round(hits / (hits + misses), 4) if hits + misses > 0 else None},
        "backends": _ints(_delta(new.by("antispam_backend_requests_total", "backend"),
                                 old.by("antispam_backend_requests_total", "backend"))),
        "fallbacks": int(new.total("antispam_backend_fallbacks_total")
                         - old.total("antispam_backend_fallbacks_total")),
        "errors": {
            "server": int(server_errors),
            "client": int(client_errors),
            "backend": _ints(_delta(new.by("antispam_backend_errors_total", "code"),
                                    old.by("antispam_backend_errors_total", "code"))),
        },
    }


def shared_window(counts: Mapping[str, Any], seconds: float, store: str) -> dict[str, Any]:
    """The decision log's counts (:meth:`antispam.decisions.DecisionStorage.decision_counts`)
    over the last ``seconds``, shaped like the per-process window's verdicts and rates.

    Requests are distinct ``request_id`` values (a client that reuses its own ``X-Request-Id``
    counts once); only answered texts are logged (no errors), and the last ~0.2 s may still be in
    the writers' queues; decisions dropped by a writer (``antispam_decisions_dropped_total``)
    are missing."""
    texts, requests = int(counts["texts"]), int(counts["requests"])
    return {"source": "decision_log", "store": store, "seconds": round(seconds, 3),
            "texts": texts, "texts_per_second": _rate(texts, seconds),
            "requests": requests, "requests_per_second": _rate(requests, seconds),
            "key_ids": int(counts.get("key_ids", 0)),
            "verdicts": {str(k): int(v) for k, v in sorted(counts["by_suggestion"].items())},
            "decided_by": {str(k): int(v) for k, v in sorted(counts["by_decided_by"].items())}}


class LiveStats:
    """A ring buffer of registry snapshots and the summaries the console asks for."""

    def __init__(self, registry: CollectorRegistry, *, interval: float = INTERVAL_SECONDS,
                 keep_seconds: float = KEEP_SECONDS, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.interval = interval
        self.clock = clock
        self.wall_clock = wall_clock
        self.snapshots: deque[Snapshot] = deque(maxlen=int(keep_seconds // interval) + 2)
        self._timer: asyncio.TimerHandle | None = None
        self.first = self.sample()  # the app's start

    def now(self) -> Snapshot:
        return take_snapshot(self.registry, self.clock(), self.wall_clock())

    def sample(self) -> Snapshot:
        snap = self.now()
        self.snapshots.append(snap)
        return snap

    def sample_if_due(self) -> None:
        """Without a timer (no event loop when the app was built), requests keep the buffer going."""
        if not self.snapshots or self.clock() - self.snapshots[-1].at >= self.interval:
            self.sample()

    @property
    def running(self) -> bool:
        return self._timer is not None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Sample every ``interval`` seconds on ``loop`` (default: the running one)."""
        if self._timer is not None:
            return
        loop = loop or asyncio.get_running_loop()
        ref = weakref.ref(self)

        def tick() -> None:
            stats = ref()
            if stats is None or stats._timer is None:
                return  # the app is gone, or stopped
            stats.sample()
            stats._timer = loop.call_later(stats.interval, tick)

        self._timer = loop.call_later(self.interval, tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def summary(self, minutes: float = 5.0) -> dict[str, Any]:
        """The last ``minutes`` (at most what the buffer holds), and one row per interval."""
        minutes = min(max(minutes, 1.0 / 6.0), MAX_MINUTES)
        current = self.now()
        since = current.at - minutes * 60.0
        inside = [s for s in self.snapshots if s.at >= since - self.interval / 2]
        # Without a snapshot inside the window (sampled on request only), the newest one before it.
        base = inside[0] if inside else self.snapshots[-1]
        points = [*inside, current] if inside else [base, current]
        series = []
        for old, new in zip(points, points[1:]):
            if new.at - old.at < 1.0:  # the fresh snapshot right after a timer tick
                continue
            step = compare(new, old)
            series.append({"end": round(new.wall, 3), "seconds": step["seconds"],
                           "requests_per_second": step["requests_per_second"],
                           "predict_per_second": step["predict"]["requests_per_second"],
                           "p99_ms": step["predict"]["latency_ms"]["p99"],
                           "errors": step["errors"]["server"]})
        if current.at - self.snapshots[-1].at >= self.interval:
            self.snapshots.append(current)  # no timer (or a late one): requests keep the buffer going
        return {
            "now": round(current.wall, 3),
            "interval_seconds": self.interval,
            "minutes_asked": round(minutes, 3),
            "sampling": "timer" if self.running else "on request",
            "latency_method": "histogram buckets of antispam_request_duration_seconds{route=\"predict\"}, "
                              "linear inside a bucket (Prometheus histogram_quantile)",
            "window": compare(current, base),
            "since_start": compare(current, self.first),
            "series": series,
        }
