"""The HTTP API through real HTTP: every route, every error, label semantics, batch order,
readiness, hot reload, the dedup cache and draining.

Tests that need real scores run a LocalBackend on tiny SavedModel versions (antispam/testing/tinymodel.py);
error paths that need a misbehaving backend use antispam/testing/fakes.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.testing import AsyncHTTPTestCase, gen_test

from antispam.app import make_app
from antispam.backends.base import BackendError, Overloaded
from antispam.backends.local import LocalBackend
from antispam.config import ServeConfig
from antispam.errors import ERROR_CODES
from antispam.features import Windowing
from antispam.http.server import HTTPServer, server_options
from antispam.testing import tinymodel
from antispam.testing.fakes import FakeBackend, FakeFeedbackStore
from antispam.text import tokenize
from tests.helpers.timing import within

JSON = {"Content-Type": "application/json"}


class ApiTestCase(AsyncHTTPTestCase):
    """Shared helpers; subclasses provide ``make_backend`` and may change ``settings``."""

    settings: dict[str, Any] = {}

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="antispam-test-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.model_dir = self.tmp / "models" / "cnn"
        self.config = ServeConfig(model_base=str(self.tmp / "models"), model_name="cnn",
                                  poll_seconds=0.05, max_chars=60, max_texts=5,
                                  max_body_bytes=4000, deadline_ms=300, **self.settings)
        self.store: FakeFeedbackStore | None = FakeFeedbackStore()
        self.backend = self.make_backend()
        super().setUp()
        self.io_loop.run_sync(self.backend.start, timeout=120)

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.backend.close, timeout=30)
        super().tearDown()

    def make_backend(self):
        raise NotImplementedError

    def get_app(self):
        return make_app(self.config, self.backend, feedback_store=self.store)

    def get_httpserver_options(self) -> dict[str, Any]:
        return server_options(self.config)

    def get_http_server(self) -> HTTPServer:
        return HTTPServer(self._app, **self.get_httpserver_options())

    def call(self, path: str, method: str = "GET", body: Any = None,
             headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
        if body is not None:
            raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers = headers or JSON
        response = self.fetch(path, method=method, body=raw, headers=headers,
                              allow_nonstandard_methods=True)
        return response.code, self.decode(response)

    @staticmethod
    def decode(response: HTTPResponse) -> Any:
        """The JSON body, without the ``request_id`` every answer carries (checked against the
        ``X-Request-Id`` header here, so the tests compare the rest exactly)."""
        assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
        body = json.loads(response.body)
        if isinstance(body, dict) and "request_id" in body:
            assert body.pop("request_id") == response.headers["X-Request-Id"]
        return body

    def assert_error(self, result: tuple[int, Any], status: int, code: str) -> None:
        got_status, body = result
        self.assertEqual((got_status, body["error"]["code"]), (status, code), body)
        self.assertTrue(body["error"]["message"])
        self.assertEqual(ERROR_CODES[code], status)

    def get_predict(self, text: str) -> tuple[int, Any]:
        return self.call("/predict?text=" + urllib.parse.quote(text))

    def metric(self, name: str, **labels: str) -> float:
        text = self.fetch("/metrics").body.decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            metric_name, _, label_part = key.partition("{")
            got = ",".join(sorted(label_part.rstrip("}").split(","))) if label_part else ""
            if metric_name == name and got == want:
                return float(value)
        return 0.0


class LocalBackendApiTest(ApiTestCase):
    def make_backend(self):
        tinymodel.build_version(self.model_dir)
        return LocalBackend(self.config)

    # -- predictions -----------------------------------------------------------------------

    def test_get_predict_spam_and_pass(self):
        status, body = self.get_predict(tinymodel.SPAM_TEXT)
        self.assertEqual(status, 200)
        item = body["data"]
        self.assertEqual(item["text"], tinymodel.SPAM_TEXT)
        self.assertEqual((item["predict"], item["label"]), (0, "spam"))
        self.assertGreaterEqual(item["spam_probability"], 0.5)
        expected = "block" if item["spam_probability"] >= 0.9 else "review"
        self.assertEqual(item["suggestion"], expected)
        self.assertEqual(item["model"], {"name": "cnn", "version": 1})

        status, body = self.get_predict(tinymodel.PASS_TEXT)
        item = body["data"]
        self.assertEqual((status, item["predict"], item["label"], item["suggestion"]),
                         (200, 1, "pass", "pass"))
        self.assertLess(item["spam_probability"], 0.5)

    def test_post_texts_keeps_order_and_single_text_gives_an_object(self):
        texts = [tinymodel.PASS_TEXT, tinymodel.SPAM_TEXT, tinymodel.SPAM_TEXT + "!",
                 tinymodel.PASS_TEXT, "明天开会"]
        status, body = self.call("/predict", "POST", {"texts": texts})
        self.assertEqual(status, 200)
        self.assertEqual([d["text"] for d in body["data"]], texts)
        self.assertEqual([d["label"] for d in body["data"]], ["pass", "spam", "spam", "pass", "pass"])
        single = self.call("/predict", "POST", {"text": tinymodel.SPAM_TEXT})[1]["data"]
        self.assertEqual(single, body["data"][1])

    def test_every_prediction_reports_its_coverage(self):
        # This version records no windows: only the first 20 tokens are read.
        long_text = "".join((tinymodel.PASS_WORDS * 4)[:25])  # 25 two-character words, 50 chars
        self.assertEqual(len(tokenize(long_text)), 25)
        status, body = self.get_predict(long_text)
        self.assertEqual(status, 200)
        self.assertEqual(body["data"]["coverage"], {"tokens": 25, "scored": 20})
        again = self.get_predict(long_text)[1]["data"]  # from the cache: same coverage
        self.assertEqual(again["coverage"], {"tokens": 25, "scored": 20})

        texts = [tinymodel.SPAM_TEXT, long_text, "明天开会"]
        status, body = self.call("/predict", "POST", {"texts": texts})
        self.assertEqual(status, 200)
        coverage = [d["coverage"] for d in body["data"]]
        counts = [len(tokenize(t)) for t in texts]
        self.assertEqual(coverage, [{"tokens": n, "scored": min(n, 20)} for n in counts])
        single = self.call("/predict", "POST", {"text": "明天开会"})[1]["data"]
        self.assertEqual(single["coverage"], {"tokens": counts[2], "scored": counts[2]})

    # -- errors ----------------------------------------------------------------------------

    def test_query_errors(self):
        self.assert_error(self.call("/predict"), 400, "missing_text")
        self.assert_error(self.get_predict(""), 400, "empty_text")
        self.assert_error(self.get_predict("！！ 🙂 ..."), 400, "empty_text")
        self.assert_error(self.get_predict("发" * 61), 413, "text_too_long")
        self.assert_error(self.call("/predict?text=%FF%FE"), 400, "invalid_utf8")
        self.assert_error(self.call("/predict?text=a&text=b"), 400, "invalid_request")

    def test_body_errors(self):
        post = lambda raw, headers=JSON: self.call("/predict", "POST", raw=raw, headers=headers)  # noqa: E731
        self.assert_error(post(b"{not json"), 400, "malformed_json")
        self.assert_error(post(b"[" * 3000), 400, "malformed_json")
        self.assert_error(post(b'["a"]'), 400, "invalid_request")
        self.assert_error(post('{"text": "\u53d1\u7968"}'.encode("gbk")), 400, "invalid_utf8")
        self.assert_error(post(b'{"texts": "abc"}'), 400, "invalid_request")
        self.assert_error(post(b'{"texts": []}'), 400, "missing_text")
        self.assert_error(post(b'{"other": 1}'), 400, "missing_text")
        self.assert_error(post(b'{"text": "a", "texts": ["b"]}'), 400, "invalid_request")
        self.assert_error(post(b'{"texts": ["a", 3]}'), 400, "invalid_text")
        self.assert_error(post(b'{"text": null}'), 400, "invalid_text")
        self.assert_error(post(b'{"text": "\\ud800"}'), 400, "invalid_text")
        self.assert_error(post(json.dumps({"texts": ["a"] * 6}).encode()), 400, "too_many_texts")
        self.assert_error(post(json.dumps({"texts": ["a", "..."]}).encode()), 400, "empty_text")
        self.assert_error(post(json.dumps({"texts": ["a", "b" * 61]}).encode()), 413, "text_too_long")
        self.assert_error(post(json.dumps({"text": "a" * 3000, "pad": "b" * 3000}).encode()),
                          413, "body_too_large")
        self.assert_error(post(b'{"text": "a"}', {"Content-Type": "text/plain"}), 415,
                          "unsupported_media_type")
        self.assert_error(post(b'{"text": "a"}', {"Content-Type": "application/x-www-form-urlencoded"}),
                          415, "unsupported_media_type")
        self.assert_error(post(b'{"text": "a"}', {"Content-Type": "application/json; charset=latin-1"}),
                          415, "unsupported_media_type")
        self.assertEqual(post(b'{"text": "a"}', {"Content-Type": "application/json; charset=UTF-8"})[0], 200)

    def test_error_message_names_the_bad_text_of_a_batch(self):
        status, body = self.call("/predict", "POST", {"texts": ["好", "好", "🙂"]})
        self.assertEqual((status, body["error"]["code"]), (400, "empty_text"))
        self.assertIn("texts[2]", body["error"]["message"])

    def test_chunked_body_over_the_limit(self):
        def chunks(write):
            async def produce():
                for _ in range(10):
                    await write(b" " * 1000)
                await write(b'{"text": "a"}')
            return produce()

        response = self.fetch("/predict", method="POST", body_producer=chunks, headers=JSON)
        self.assertEqual(response.code, 413)
        self.assertEqual(self.decode(response)["error"]["code"], "body_too_large")

    def test_unknown_route_and_wrong_method_are_json(self):
        self.assert_error(self.call("/nope"), 404, "not_found")
        self.assert_error(self.call("/predict", "DELETE"), 405, "method_not_allowed")
        response = self.fetch("/healthz", method="POST", body=b"{}", headers=JSON)
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers["Allow"], "GET, HEAD")
        self.assertEqual(self.decode(response)["error"]["code"], "method_not_allowed")
        self.assert_error(self.call("/feedback"), 405, "method_not_allowed")

    # -- other routes ----------------------------------------------------------------------

    def test_health_ready_models_openapi(self):
        self.assertEqual(self.call("/healthz"), (200, {"status": "ok"}))
        self.assertEqual(self.call("/readyz"),
                         (200, {"ready": True, "backend": "local", "model": {"name": "cnn", "version": 1}}))
        status, models = self.call("/models")
        self.assertEqual((status, models["backend"], models["model"], models["current_version"]),
                         (200, "local", "cnn", 1))
        self.assertEqual(models["versions"][0]["state"], "serving")
        status, doc = self.call("/openapi.json")
        self.assertEqual(status, 200)
        self.assertTrue(doc["openapi"].startswith("3."))
        self.assertEqual(set(doc["paths"]), {"/predict", "/feedback", "/healthz", "/readyz",
                                             "/models", "/metrics", "/openapi.json", "/lists", "/review/next",
                                             "/review/{id}/decision", "/review/{id}/release", "/review/stats",
                                             "/appeals", "/decisions"})
        codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
        self.assertEqual(set(codes), set(ERROR_CODES))

    def test_feedback(self):
        status, body = self.call("/feedback", "POST", {"text": tinymodel.SPAM_TEXT, "label": "spam"})
        self.assertEqual(status, 202)
        self.assertEqual(body["data"]["id"], 1)
        text, normalized, label, version = self.store.rows[0]
        self.assertEqual((text, label, version), (tinymodel.SPAM_TEXT, 0, 1))
        self.assertNotIn("，", normalized)
        self.assertIn("xxxxxxxxxxx", normalized)  # the shared pipeline's normalized form
        self.assertEqual(self.call("/feedback", "POST", {"text": "好的", "label": 1})[0], 202)
        self.assert_error(self.call("/feedback", "POST", {"text": "好的", "label": "ham"}), 400,
                          "invalid_label")
        self.assert_error(self.call("/feedback", "POST", {"text": "好的"}), 400, "invalid_label")
        self.assert_error(self.call("/feedback", "POST", {"label": "spam"}), 400, "missing_text")
        self.assert_error(self.call("/feedback", "POST", {"text": "!!", "label": "spam"}), 400,
                          "empty_text")
        self.assert_error(self.call("/feedback", "POST", raw=b"{", headers=JSON), 400, "malformed_json")
        self.store.fail = True
        self.assert_error(self.call("/feedback", "POST", {"text": "好的", "label": 1}), 503,
                          "feedback_unavailable")
        self.assertEqual(len(self.store.rows), 2)

    # -- cache and versions ----------------------------------------------------------------

    def test_cache_hits_skip_the_model_and_a_new_version_invalidates(self):
        first = self.get_predict(tinymodel.SPAM_TEXT)[1]["data"]
        # Same normalized text (punctuation and digits differ): answered from the cache.
        variant = tinymodel.SPAM_TEXT.replace("，", "!!").replace("13800138000", "13912345678")
        second = self.get_predict(variant)[1]["data"]
        self.assertEqual(second["spam_probability"], first["spam_probability"])
        self.assertEqual(self.metric("antispam_cache_hits_total"), 1)
        self.assertEqual(self.metric("antispam_backend_requests_total", backend="cache"), 1)
        self.assertEqual(self.metric("antispam_model_batch_texts_count"), 1)

        tinymodel.build_version(self.model_dir, flip=True)
        self.io_loop.run_sync(self.backend.refresh, timeout=30)
        third = self.get_predict(tinymodel.SPAM_TEXT)[1]["data"]
        self.assertEqual((third["model"]["version"], third["label"]), (2, "spam"))
        self.assertEqual(self.metric("antispam_cache_invalidations_total"), 1)
        self.assertEqual(self.metric("antispam_cache_hits_total"), 1)
        self.assertEqual(self.metric("antispam_model_batch_texts_count"), 2)

    @gen_test(timeout=60)
    async def test_hot_reload_while_requests_stream(self):
        client = AsyncHTTPClient()
        url = self.get_url("/predict")
        seen: list[tuple[int, int, str]] = []
        stop = asyncio.Event()

        async def stream(worker: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                # Distinct texts so the cache does not hide the model.
                texts = [f"{tinymodel.SPAM_TEXT}{worker}x{n}", f"{tinymodel.PASS_TEXT}{worker}x{n}"]
                r = await client.fetch(url, method="POST", headers=JSON, raise_error=False,
                                       body=json.dumps({"texts": texts}))
                data = json.loads(r.body).get("data") if r.code == 200 else None
                seen.append((r.code, data[0]["model"]["version"] if data else -1,
                             "".join(d["label"][0] for d in data) if data else r.body.decode()))

        async def until(predicate, timeout=30.0):
            end = asyncio.get_running_loop().time() + timeout
            while not predicate():
                assert asyncio.get_running_loop().time() < end, seen[-3:]
                await asyncio.sleep(0.02)

        tasks = [asyncio.ensure_future(stream(w)) for w in range(4)]
        await until(lambda: len(seen) >= 20)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: tinymodel.build_version(self.model_dir, flip=True))
        await until(lambda: seen[-1][1] == 2)
        mark = len(seen)
        await until(lambda: len(seen) >= mark + 20)
        stop.set()
        await asyncio.gather(*tasks)
        self.assertEqual([s for s in seen if s[0] != 200], [])
        self.assertTrue(all(labels == "sp" for _, _, labels in seen))  # never mixed versions
        versions = [v for _, v, _ in seen]
        self.assertEqual((versions[0], versions[-1]), (1, 2))


class WindowedApiTest(ApiTestCase):
    """A version that records windows reads every token of a long text."""

    def make_backend(self):
        tinymodel.build_version(self.model_dir, windowing=Windowing())
        return LocalBackend(self.config)

    def test_coverage_of_a_windowed_version(self):
        long_text = "".join((tinymodel.PASS_WORDS * 4)[:25])
        status, body = self.get_predict(long_text)
        self.assertEqual((status, body["data"]["coverage"]), (200, {"tokens": 25, "scored": 25}))
        texts = [long_text, tinymodel.SPAM_TEXT]
        status, body = self.call("/predict", "POST", {"texts": texts})
        self.assertEqual(status, 200)
        counts = [len(tokenize(t)) for t in texts]
        self.assertEqual([d["coverage"] for d in body["data"]],
                         [{"tokens": n, "scored": n} for n in counts])
        self.assertEqual([d["label"] for d in body["data"]], ["pass", "spam"])


class NotReadyApiTest(ApiTestCase):
    """No version on disk at start: alive, not ready; ready once a version is published."""

    def make_backend(self):
        return LocalBackend(self.config)

    def test_readiness_before_and_after_a_model_is_loaded(self):
        self.assertEqual(self.call("/healthz")[0], 200)
        self.assert_error(self.call("/readyz"), 503, "not_ready")
        self.assert_error(self.get_predict(tinymodel.SPAM_TEXT), 503, "not_ready")
        self.assertEqual(self.call("/models")[1]["current_version"], None)
        tinymodel.build_version(self.model_dir)
        self.io_loop.run_sync(self.backend.refresh, timeout=30)
        self.assertEqual(self.call("/readyz")[0], 200)
        self.assertEqual(self.get_predict(tinymodel.SPAM_TEXT)[1]["data"]["label"], "spam")


class FakeBackendApiTest(ApiTestCase):
    """Backend failures become 503s with the JSON error shape, within the deadline."""

    settings = {"cache_size": 0, "min_tokens_to_block": 0}

    def make_backend(self):
        self.store = None
        return FakeBackend(lambda tokens: {"a": 0.5, "b": 0.9, "c": 0.4999}.get(tokens[0], 0.1))

    def test_thresholds_and_label_boundaries(self):
        status, body = self.call("/predict", "POST", {"texts": ["a", "b", "c", "d"]})
        got = [(d["predict"], d["label"], d["suggestion"]) for d in body["data"]]
        self.assertEqual(got, [(0, "spam", "review"), (0, "spam", "block"),
                               (1, "pass", "pass"), (1, "pass", "pass")])

    def test_coverage_when_the_backend_does_not_report_it(self):
        # FakeBackend gives no scored_tokens: every token counts as read.
        status, body = self.call("/predict", "POST", {"texts": ["a", "b c d"]})
        self.assertEqual(status, 200)
        self.assertEqual([d["coverage"] for d in body["data"]],
                         [{"tokens": 1, "scored": 1}, {"tokens": 3, "scored": 3}])
        self.assertEqual(self.get_predict("b c")[1]["data"]["coverage"], {"tokens": 2, "scored": 2})

    def test_duplicates_in_one_request_reach_the_backend_once(self):
        self.call("/predict", "POST", {"texts": ["a", "b", "a!", "A"]})
        self.assertEqual(self.backend.calls[-1], [["a"], ["b"]])

    def test_backend_errors_are_503(self):
        self.backend.error = BackendError("TF Serving is down")
        self.assert_error(self.get_predict("a"), 503, "backend_unavailable")
        self.backend.error = Overloaded("queue full")
        self.assert_error(self.get_predict("a"), 503, "overloaded")
        self.assertEqual(self.metric("antispam_backend_errors_total", code="overloaded"), 1)

    def test_unusable_scores_from_a_backend_are_503_not_500(self):
        self.backend.score = lambda tokens: float("nan")
        self.assert_error(self.get_predict("a"), 503, "backend_unavailable")

    @pytest.mark.timing
    def test_a_stalled_backend_gets_503_within_the_deadline(self):
        self.backend.delay = 5.0
        response = self.fetch("/predict?text=a")
        self.assertEqual((response.code, self.decode(response)["error"]["code"]),
                         (503, "deadline_exceeded"))
        self.assertLess(response.request_time, within(1.0))  # deadline 300 ms + grace

    def test_an_unexpected_error_is_a_logged_json_500(self):
        self.backend.error = RuntimeError("bug")
        with self.assertLogs("antispam.app", logging.ERROR) as logs:
            self.assert_error(self.get_predict("a"), 500, "internal_error")
        self.assertIn("bug", "\n".join(logs.output))

    def test_feedback_without_a_store_is_503(self):
        self.assert_error(self.call("/feedback", "POST", {"text": "a", "label": "spam"}), 503,
                          "feedback_unavailable")

    def test_not_ready_backend(self):
        self.backend._ready = False
        self.assert_error(self.call("/readyz"), 503, "not_ready")

    @gen_test(timeout=30)
    async def test_drain_finishes_requests_in_flight_and_refuses_new_ones(self):
        self.backend.delay = 0.2
        client = AsyncHTTPClient()
        services = self._app.services
        in_flight = asyncio.ensure_future(client.fetch(self.get_url("/predict?text=a"), raise_error=False))
        while services.inflight == 0:
            await asyncio.sleep(0.01)
        drained = asyncio.ensure_future(services.drain(5.0))
        await asyncio.sleep(0.01)
        refused = await client.fetch(self.get_url("/predict?text=b"), raise_error=False)
        self.assertEqual((refused.code, json.loads(refused.body)["error"]["code"]), (503, "shutting_down"))
        response = await in_flight
        self.assertEqual(response.code, 200)
        self.assertTrue(await drained)


class TooLittleTextApiTest(ApiTestCase):
    """Fewer than min_tokens_to_block tokens: at most review on model evidence, and it says so."""

    settings = {"cache_size": 0, "min_tokens_to_block": 3}

    def make_backend(self):
        self.store = None
        return FakeBackend(lambda tokens: 0.99)

    def test_short_texts_are_reviewed_not_blocked(self):
        status, body = self.call("/predict", "POST", {"texts": ["a", "a b", "a b c"]})
        self.assertEqual(status, 200)
        got = [(d["suggestion"], d.get("capped"), d["spam_probability"], d["label"]) for d in body["data"]]
        self.assertEqual(got, [("review", "too_little_text", 0.99, "spam"),
                               ("review", "too_little_text", 0.99, "spam"),
                               ("block", None, 0.99, "spam")])


class RealFeedbackStoreApiTest(ApiTestCase):
    """POST /feedback with the SQLite store the retrain job reads."""

    def make_backend(self):
        from antispam.feedback import FeedbackStore

        self.store = FeedbackStore(self.tmp / "feedback.db")
        self.addCleanup(self.store.close)
        return FakeBackend()

    def test_feedback_is_stored_durably(self):
        status, body = self.call("/feedback", "POST", {"text": "代开发票 13800138000", "label": "spam"})
        self.assertEqual((status, body["data"]["duplicate"]), (202, False))
        status, body = self.call("/feedback", "POST", {"text": "代开发票，13912345678！", "label": 0})
        self.assertEqual((status, body["data"]["duplicate"], body["data"]["count"]), (202, True, 2))
        [sample] = self.store.samples()
        self.assertEqual((sample.label, sample.count, sample.model_version), (0, 2, 7))
        self.assertEqual(sample.normalized, "代开发票 xxxxxxxxxxx")
