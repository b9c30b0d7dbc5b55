"""The decision log through real HTTP (issue 23): ``/predict`` writes one decision per text off
the request path, ``GET /decisions`` reads them back (admin), errors are 4xx/503 JSON, and a
store that fails never fails ``/predict``.

The same tests run on SQLite and on PostgreSQL (the subclass at the end; it skips without the
server .ci/run starts). The backend is the fake one (no model).
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse
from typing import Any

import pytest

from antispam.decisions import DecisionLog, TextRetention, text_sha256
from antispam.feedback_stores import open_store
from antispam.keys import KeyRing, add_key
from antispam.testing.fakes import FakeBackend
from tests.helpers.stores import POSTGRES_ENV, fresh_schema
from tests.service.test_app import JSON, ApiTestCase

pytestmark = pytest.mark.service

SPAM = "代开 发票 贷款 请联系 13800138000"
HAM = "妈妈我们明天回家吃饭"


class DecisionsApiTest(ApiTestCase):
    keys_on = False

    def make_backend(self):
        return FakeBackend()

    def store_target(self) -> str:
        return str(self.tmp / "feedback.db")

    def get_app(self):
        from antispam.app import make_app

        self.target = self.store_target()
        self.real_store = open_store(self.target)
        self.addCleanup(self.real_store.close)
        self.log = DecisionLog(self.real_store, queue_size=1000, linger=0.0,
                               retention=TextRetention(30, frozenset({"block", "review"})))
        self.addCleanup(self.log.close, 5)
        ring = None
        if self.keys_on:
            keys_file = self.tmp / "keys.tsv"
            self.keys = {name: add_key(keys_file, name, roles, 1000.0) for name, roles in (
                ("client", ["predict"]), ("watcher", ["viewer"]), ("root", ["admin"]))}
            ring = KeyRing(keys_file, poll_seconds=0.0)
        return make_app(self.config, self.backend, feedback_store=self.real_store, keyring=ring,
                        decision_log=self.log)

    def written(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while self.log.written < count:
            self.assertLess(time.monotonic(), deadline, f"only {self.log.written} of {count} decisions written")
            time.sleep(0.01)

    def test_each_text_of_an_answer_is_logged_and_found(self):
        status, body = self.call("/predict", "POST", {"texts": [SPAM, HAM], "data_ids": ["m-1", "m-2"]},
                                 headers={**JSON, "X-Request-Id": "req-1"})
        self.assertEqual(status, 200)
        answer = body["data"]
        self.assertEqual(self.get_predict(HAM + "啊")[0], 200)
        self.written(3)
        status, found = self.call("/decisions?request_id=req-1")
        self.assertEqual((status, found["count"], found["limit"]), (200, 2, 100))
        by_index = {d["index"]: d for d in found["data"]}
        block, passed = by_index[0], by_index[1]
        self.assertEqual(block["suggestion"], answer[0]["suggestion"])
        self.assertEqual(block["suggestion"], "block")
        self.assertEqual((block["spam_probability"], block["model"], block["decided_by"], block["policy"]),
                         (answer[0]["spam_probability"], answer[0]["model"], answer[0]["decided_by"], "default"))
        self.assertEqual((block["data_id"], block["key_id"], block["request_id"]), ("m-1", "anonymous", "req-1"))
        self.assertEqual(block["text_sha256"], text_sha256(SPAM))
        self.assertEqual(block["text"], SPAM)  # a block: kept for appeals
        self.assertGreater(block["text_until"], time.time() + 29 * 86400)
        self.assertEqual((passed["suggestion"], passed["text"], passed["text_until"]), ("pass", None, None))
        self.assertEqual(passed["text_sha256"], text_sha256(HAM))
        status, by_data = self.call("/decisions?data_id=m-2")
        self.assertEqual([(d["request_id"], d["index"]) for d in by_data["data"]], [("req-1", 1)])
        status, none = self.call("/decisions?request_id=nothing-here")
        self.assertEqual((status, none["data"], none["count"]), (200, [], 0))

    def test_get_predict_logs_its_data_id_and_the_response_request_id(self):
        response = self.fetch("/predict?data_id=g-7&text=" + urllib.parse.quote(SPAM))
        self.assertEqual(response.code, 200)
        self.written(1)
        status, found = self.call("/decisions?data_id=g-7")
        self.assertEqual(status, 200)
        [decision] = found["data"]
        self.assertEqual(decision["request_id"], response.headers["X-Request-Id"])

    def test_bad_parameters_are_400_json(self):
        for query in ("", "?limit=5", "?request_id=", "?request_id=a&request_id=b", "?request_id=a&limit=0",
                      "?request_id=a&limit=1001", "?request_id=a&limit=x", "?request_id=a&limit=%C2%B2",
                      "?request_id=a&sort=time", "?data_id=" + "x" * 129):
            self.assert_error(self.call("/decisions" + query), 400, "invalid_request")
        self.assert_error(self.call("/decisions?request_id=%FF"), 400, "invalid_utf8")
        self.assertEqual(self.call("/decisions", "POST", {"request_id": "a"})[0], 405)

    def test_a_failing_store_never_fails_predict_and_the_drops_are_counted(self):
        self.log.store = open_store(str(self.tmp / "a-file"))  # a store that cannot open:
        (self.tmp / "a-file").mkdir()  # ... its path is a folder
        for i in range(5):
            self.assertEqual(self.call("/predict", "POST", {"texts": [SPAM + str(i), HAM]})[0], 200)
        deadline = time.monotonic() + 10
        while self.log.dropped["store_error"] < 10:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        metrics = self.fetch("/metrics").body.decode()
        dropped = re.search(r'^antispam_decisions_dropped_total\{reason="store_error"\} (\S+)$', metrics, re.M)
        self.assertIsNotNone(dropped, metrics)
        assert dropped is not None
        self.assertEqual(float(dropped.group(1)), 10.0)
        self.assertIn("antispam_decisions_written_total 0.0", metrics)

    def test_a_store_that_cannot_be_read_is_503_json(self):
        services = self._app.services  # type: ignore[attr-defined]
        services.decision_store = open_store(str(self.tmp))  # a folder is no SQLite file
        self.assert_error(self.call("/decisions?request_id=r"), 503, "decisions_unavailable")
        services.decision_store = None
        self.assert_error(self.call("/decisions?request_id=r"), 503, "decisions_unavailable")


class DecisionsApiPostgresTest(DecisionsApiTest):
    """The same tests with the decision log in PostgreSQL."""

    def setUp(self) -> None:
        if not os.environ.get(POSTGRES_ENV):
            self.skipTest(f"{POSTGRES_ENV} is not set: no PostgreSQL server for this run (.ci/run starts one)")
        super().setUp()

    def store_target(self) -> str:
        url, drop = fresh_schema(os.environ[POSTGRES_ENV])
        self.addCleanup(drop)
        return url

    def test_a_store_that_cannot_be_read_is_503_json(self):
        services = self._app.services  # type: ignore[attr-defined]
        dead = open_store("postgresql://postgres@127.0.0.1:9/nowhere", timeout=1.0)
        self.addCleanup(dead.close)
        services.decision_store = dead
        self.assert_error(self.call("/decisions?request_id=r"), 503, "decisions_unavailable")


class DecisionsRolesTest(DecisionsApiTest):
    keys_on = True

    def as_(self, name: str | None, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        headers = dict(JSON) if body is not None else {}
        if name is not None:
            headers["Authorization"] = f"Bearer {self.keys[name]}"
        return self.call(path, method, body, headers=headers)

    def test_only_admin_reads_decisions_and_the_key_id_is_logged(self):
        status, body = self.as_("client", "/predict", "POST", {"text": SPAM, "data_id": "k-1"})
        self.assertEqual(status, 200)
        self.written(1)
        self.assert_error(self.as_(None, "/decisions?data_id=k-1"), 401, "unauthorized")
        self.assert_error(self.as_("client", "/decisions?data_id=k-1"), 403, "forbidden")
        self.assert_error(self.as_("watcher", "/decisions?data_id=k-1"), 403, "forbidden")
        status, found = self.as_("root", "/decisions?data_id=k-1")
        self.assertEqual(status, 200)
        self.assertEqual([d["key_id"] for d in found["data"]], ["client"])

    # The keyless tests above are not repeated with keys on.
    test_each_text_of_an_answer_is_logged_and_found = None  # type: ignore[assignment]
    test_get_predict_logs_its_data_id_and_the_response_request_id = None  # type: ignore[assignment]
    test_bad_parameters_are_400_json = None  # type: ignore[assignment]
    test_a_failing_store_never_fails_predict_and_the_drops_are_counted = None  # type: ignore[assignment]
    test_a_store_that_cannot_be_read_is_503_json = None  # type: ignore[assignment]
