"""/metrics: the named metrics are exposed, follow the app's state, and each app has its own."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families
from tornado.testing import AsyncHTTPTestCase

from antispam.app import make_app
from antispam.cache import CachedScore, PredictionCache
from antispam.config import ServeConfig
from antispam.metrics import Metrics
from antispam.testing.fakes import FakeBackend


def samples(exposition: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class MetricsEndpointTest(AsyncHTTPTestCase):
    def get_app(self):
        self.backend = FakeBackend(extra={"fallback": True}, version=3)
        return make_app(ServeConfig(cache_size=100), self.backend)

    def scrape(self) -> dict:
        response = self.fetch("/metrics")
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain"))
        return samples(response.body)

    def test_named_metrics_follow_requests(self):
        self.fetch("/predict?text=代开发票")
        self.fetch("/predict?text=代开发票")  # a cache hit
        self.fetch("/predict", method="POST", body=json.dumps({"texts": ["好", "发票", "x"]}),
                   headers={"Content-Type": "application/json"})
        self.fetch("/predict?text=")  # 400
        m = self.scrape()
        req = lambda method, status: m[("antispam_requests_total",  # noqa: E731
                                         (("method", method), ("route", "predict"), ("status", status)))]
        self.assertEqual((req("GET", "200"), req("GET", "400"), req("POST", "200")), (2, 1, 1))
        self.assertEqual(m[("antispam_request_duration_seconds_count", (("route", "predict"),))], 4)
        self.assertEqual(m[("antispam_backend_requests_total", (("backend", "fake"),))], 2)
        self.assertEqual(m[("antispam_backend_requests_total", (("backend", "cache"),))], 1)
        self.assertEqual(m[("antispam_backend_fallbacks_total", ())], 2)
        self.assertEqual(m[("antispam_request_texts_sum", ())], 5)
        self.assertEqual(m[("antispam_model_batch_texts_sum", ())], 4)  # the hit skipped the model
        self.assertEqual(m[("antispam_model_version", (("backend", "fake"), ("model", ServeConfig().model_name)))], 3)
        self.assertEqual(m[("antispam_ready", (("backend", "fake"),))], 1)
        self.assertEqual(m[("antispam_cache_hits_total", ())], 1)
        self.assertEqual(m[("antispam_cache_misses_total", ())], 4)
        self.assertAlmostEqual(m[("antispam_cache_hit_ratio", ())], 0.2)

    def test_served_version_and_readiness_are_read_at_scrape_time(self):
        self.backend.version = None
        self.backend._ready = False
        m = self.scrape()
        self.assertEqual(m[("antispam_model_version", (("backend", "fake"), ("model", ServeConfig().model_name)))], -1)
        self.assertEqual(m[("antispam_ready", (("backend", "fake"),))], 0)


def test_each_metrics_object_has_its_own_registry():
    a, b = Metrics(), Metrics()
    a.observe_request("predict", "GET", 200, 0.01)
    key = ("antispam_requests_total", (("method", "GET"), ("route", "predict"), ("status", "200")))
    assert samples(a.exposition())[key] == 1
    assert key not in samples(b.exposition())


def test_cache_collector_reports_the_cache():
    m = Metrics()
    cache = PredictionCache(10)
    m.watch_cache(cache)
    cache.get("a", 1)
    cache.put("a", 1, CachedScore(0.5, "cnn", "local"))
    cache.get("a", 1)
    cache.get("a", 2)
    got = samples(m.exposition())
    assert got[("antispam_cache_hits_total", ())] == 1
    assert got[("antispam_cache_misses_total", ())] == 2
    assert got[("antispam_cache_invalidations_total", ())] == 1
    assert got[("antispam_cache_entries", ())] == 0


def test_client_chosen_labels_come_from_fixed_sets():
    m = Metrics()
    for i in range(50):
        m.observe_request("healthz", f"FOOBAR{i}", 405, 0.001)
        m.observe_request(f"route{i}", "GET", 404, 0.001)
    got = samples(m.exposition())
    assert got[("antispam_requests_total", (("method", "other"), ("route", "healthz"), ("status", "405")))] == 50
    assert got[("antispam_requests_total", (("method", "GET"), ("route", "other"), ("status", "404")))] == 50
    assert not [key for key in got if "FOOBAR" in str(key) or "route1" in str(key)]


class DegradedBackend(FakeBackend):
    failures: dict[int, int] = {2: 3, 5: 1}

    @property
    def degraded(self) -> str | None:
        return "the newest version 5 failed to load (VersionError); version 4 serves"

    def load_failures(self) -> dict[int, int]:
        return dict(self.failures)


def test_load_failures_per_version_and_degraded_are_read_at_scrape_time():
    m = Metrics()
    backend = DegradedBackend(version=4)
    m.watch_backend(backend, "cnn")
    got = samples(m.exposition())
    assert got[("antispam_model_load_failures_total", (("model", "cnn"), ("version", "2")))] == 3
    assert got[("antispam_model_load_failures_total", (("model", "cnn"), ("version", "5")))] == 1
    assert got[("antispam_degraded", (("backend", "fake"),))] == 1
    backend.failures = {}
    got = samples(m.exposition())
    assert not [key for key in got if key[0] == "antispam_model_load_failures_total"]
    plain = Metrics()
    plain.watch_backend(FakeBackend(), "cnn")  # a backend that cannot tell: 0, no series
    assert samples(plain.exposition())[("antispam_degraded", (("backend", "fake"),))] == 0


def test_the_review_queue_sampler_reads_at_most_every_interval_and_never_blocks_long(tmp_path) -> None:
    """antispam.metrics.ReviewQueueSampler on a real SQLite queue: one read per interval however
    many scrapes; a store slower than ``wait`` does not hold the scrape (the sample lands for the
    next one); a failing store counts an error and leaves no gauges (not stale numbers)."""
    import asyncio
    import threading
    import time

    from antispam.feedback_stores import open_store
    from antispam.metrics import ReviewQueueSampler, _ReviewCollector
    from antispam.review_stores import review_queue_for

    queue = review_queue_for(open_store(str(tmp_path / "feedback.db")))
    queue.enqueue([{"source": "review", "request_id": "r1", "text": "加微信"}], now=time.time() - 60)
    gate = threading.Event()
    gate.set()

    class Gated:  # the real queue behind a gate that can hold a read
        def queued(self, **kwargs):
            gate.wait(10)
            return queue.queued(**kwargs)

    sampler = ReviewQueueSampler(Gated(), interval=3600.0, wait=0.2)  # type: ignore[arg-type]

    def gauges() -> dict:
        registry_samples = {}
        for family in _ReviewCollector(sampler, None).collect():
            for s in family.samples:
                registry_samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return registry_samples

    async def scrapes() -> None:
        await asyncio.gather(*(sampler.refresh() for _ in range(5)))  # concurrent scrapes share one read
        assert sampler.reads == 1 and sampler.depths is not None
        await sampler.refresh()
        assert sampler.reads == 1  # inside the interval
        m = gauges()
        assert m[("antispam_review_queue_depth", (("source", "review"),))] == 1
        assert m[("antispam_review_queue_depth", (("source", "appeal"),))] == 0
        assert 59 <= m[("antispam_review_queue_oldest_age_seconds", (("source", "review"),))] < 120
        assert m[("antispam_review_queue_oldest_age_seconds", (("source", "appeal"),))] == 0
        sampler.interval = 0.0
        gate.clear()  # the store hangs
        started = time.monotonic()
        await sampler.refresh()
        assert time.monotonic() - started < 1.0 and sampler.reads == 2  # bounded by wait=0.2
        await sampler.refresh()
        assert sampler.reads == 2  # the hung read is still the pending one: not a second
        gate.set()
        await asyncio.sleep(0.2)
        import sqlite3

        with sqlite3.connect(tmp_path / "feedback.db") as conn:  # now the store fails: no table
            conn.execute("DROP TABLE review_items")
        await sampler.refresh()
        assert sampler.errors == 1 and sampler.depths is None
        m = gauges()
        assert ("antispam_review_queue_depth", (("source", "review"),)) not in m
        assert m[("antispam_review_queue_sample_errors_total", ())] == 1

    try:
        asyncio.run(scrapes())
    finally:
        gate.set()
        queue.close()
