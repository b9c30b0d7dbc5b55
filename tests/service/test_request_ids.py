"""Request ids and data ids (docs/contracts.md#request-ids), through real HTTP with a fake backend."""

from __future__ import annotations

import json
import logging
import re
import sqlite3

import pytest

from antispam.feedback import FeedbackStore
from antispam.request_ids import request_id_from
from antispam.testing.fakes import FakeBackend
from tests.service.test_app import JSON, ApiTestCase

pytestmark = pytest.mark.service

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_request_id_from_keeps_sane_ids_and_replaces_the_rest():
    assert request_id_from("abc-1.2_3") == "abc-1.2_3"
    assert request_id_from("a" * 64) == "a" * 64
    for bad in (None, "", "a" * 65, "has space", "ünï", "a/b", "x\r\nSet-Cookie: y"):
        assert HEX32.fullmatch(request_id_from(bad)), bad


class RequestIdTest(ApiTestCase):
    def make_backend(self):
        return FakeBackend()

    def test_generated_id_in_header_and_body(self):
        response = self.fetch("/predict?text=%E4%BD%A0%E5%A5%BD")
        body = json.loads(response.body)
        self.assertTrue(HEX32.fullmatch(response.headers["X-Request-Id"]))
        self.assertEqual(body["request_id"], response.headers["X-Request-Id"])
        other = self.fetch("/predict?text=%E4%BD%A0%E5%A5%BD").headers["X-Request-Id"]
        self.assertNotEqual(other, response.headers["X-Request-Id"])

    def test_client_id_is_echoed_and_an_insane_one_replaced(self):
        response = self.fetch("/healthz", headers={"X-Request-Id": "req-42.a_b"})
        self.assertEqual(response.headers["X-Request-Id"], "req-42.a_b")
        self.assertEqual(json.loads(response.body)["request_id"], "req-42.a_b")
        response = self.fetch("/healthz", headers={"X-Request-Id": "x" * 65})
        self.assertTrue(HEX32.fullmatch(response.headers["X-Request-Id"]))

    def test_errors_carry_the_id(self):
        for path, method, body in (("/predict", "GET", None), ("/nowhere", "GET", None),
                                   ("/predict", "POST", {"texts": "nope"})):
            response = self.fetch(path, method=method, headers={**JSON, "X-Request-Id": "e1"},
                                  body=None if body is None else json.dumps(body),
                                  allow_nonstandard_methods=True)
            self.assertGreaterEqual(response.code, 400)
            self.assertEqual(response.headers["X-Request-Id"], "e1")
            self.assertEqual(json.loads(response.body)["request_id"], "e1")
            self.assertIn("error", json.loads(response.body))
        # 413 from the streaming body check (send_error path) too
        response = self.fetch("/predict", method="POST", headers={**JSON, "X-Request-Id": "big"},
                              body=b'{"text": "' + b"a" * 5000 + b'"}')
        self.assertEqual((response.code, response.headers["X-Request-Id"]), (413, "big"))

    def test_data_ids_are_echoed_per_item(self):
        status, body = self.call("/predict", "POST", {"texts": ["你好", "代开发票"], "data_ids": ["m1", None]})
        self.assertEqual(status, 200)
        self.assertEqual(body["data"][0]["data_id"], "m1")
        self.assertNotIn("data_id", body["data"][1])
        status, body = self.call("/predict", "POST", {"text": "你好", "data_id": "one"})
        self.assertEqual(body["data"]["data_id"], "one")
        status, body = self.call("/predict?text=%E4%BD%A0%E5%A5%BD&data_id=g7")
        self.assertEqual(body["data"]["data_id"], "g7")
        status, body = self.call("/predict", "POST", {"texts": ["你好"]})
        self.assertNotIn("data_id", body["data"][0])

    def test_bad_data_ids_are_400(self):
        for payload in ({"texts": ["你好"], "data_ids": ["a", "b"]}, {"texts": ["你好"], "data_ids": "a"},
                        {"texts": ["你好"], "data_ids": [3]}, {"text": "你好", "data_id": "x" * 129}):
            self.assert_error(self.call("/predict", "POST", payload), 400, "invalid_request")

    def test_access_log_names_the_request_id(self):
        with self.assertLogs("antispam.access", logging.INFO) as logs:
            self.fetch("/predict", headers={"X-Request-Id": "logged-1"})
        self.assertIn("rid=logged-1", "\n".join(logs.output))

    def test_feedback_takes_request_and_data_ids(self):
        status, body = self.call("/feedback", "POST", {"text": "代开发票", "label": "pass",
                                                       "request_id": "r1", "data_id": "d1"})
        self.assertEqual(status, 202)
        assert self.store is not None
        self.assertEqual(self.store.refs[-1], {"request_id": "r1", "data_id": "d1"})
        self.call("/feedback", "POST", {"text": "代开发票", "label": "pass"})
        self.assertEqual(self.store.refs[-1], {})
        self.assert_error(self.call("/feedback", "POST", {"text": "a", "label": "pass", "data_id": 5}),
                          400, "invalid_request")


def test_feedback_store_keeps_ids_and_migrates_an_old_file(tmp_path):
    path = tmp_path / "fb.db"
    old = sqlite3.connect(path)  # a file made before the columns existed
    old.executescript("""CREATE TABLE feedback (id INTEGER PRIMARY KEY, normalized TEXT NOT NULL,
        label INTEGER NOT NULL CHECK (label IN (0, 1)), text TEXT NOT NULL, model_version INTEGER,
        first_seen REAL NOT NULL, last_seen REAL NOT NULL, count INTEGER NOT NULL DEFAULT 1,
        UNIQUE (normalized, label));
        INSERT INTO feedback (normalized, label, text, first_seen, last_seen) VALUES ('旧', 0, '旧', 1, 1);""")
    old.commit()
    old.close()
    with FeedbackStore(path) as store:
        store.add("代开发票", "代开发票", 0, 3, request_id="r1", data_id="d1")
        store.add("代开发票", "代开发票", 0, 3)  # a repeat without ids keeps them
        store.add("你好", "你好", 1, 3, data_id="d2")
    rows = sqlite3.connect(path).execute("SELECT normalized, request_id, data_id FROM feedback ORDER BY id").fetchall()
    assert rows == [("旧", None, None), ("代开发票", "r1", "d1"), ("你好", None, "d2")]
    with FeedbackStore(path) as again:  # opening twice adds nothing twice
        assert len(again.samples()) == 3
