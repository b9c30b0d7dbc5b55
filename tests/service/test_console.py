"""The console's routes in-process: its static files (content types, CSP, revalidation), its
read-only JSON endpoints (version metrics, report images, promotion log, live summary) and the
404s for anything that is not exactly one of them (path traversal included).

No TensorFlow: a version folder here is just ``saved_model.pb`` + ``assets.extra/metrics.json``,
which is all the console reads; scores come from antispam/testing/fakes.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tornado.testing import AsyncHTTPTestCase

from antispam.app import make_app
from antispam.config import ServeConfig
from antispam.console import handlers
from antispam.decisions import Decision, DecisionLog, text_sha256
from antispam.feedback_stores import open_store
from antispam.testing.fakes import FakeBackend, FakeFeedbackStore
from tests.helpers.stores import POSTGRES_ENV, fresh_schema

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
RUN = {"source_vectors": "abc123", "wall_seconds": 12.5, "best_epoch": 2,
       "history": [{"epoch": 1, "loss": 0.3}, {"epoch": 2, "loss": 0.2}]}
TEST_SCORES = {"f1": 0.95, "precision": 0.96, "recall": 0.94, "accuracy": 0.95, "roc_auc": 0.99, "count": 100,
               "confusion": {"spam_as_spam": 47, "spam_as_pass": 3, "pass_as_spam": 2, "pass_as_pass": 48}}


def write_version(model_dir: Path, version: int, metrics: dict[str, Any] | None) -> Path:
    folder = model_dir / str(version)
    (folder / "assets.extra").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")
    if metrics is not None:
        (folder / "assets.extra" / "metrics.json").write_text(json.dumps(metrics))
    return folder


def write_report(report_dir: Path, name: str, version: int, scores: dict[str, Any]) -> Path:
    folder = report_dir / f"{name}-v{version}"
    folder.mkdir(parents=True)
    (folder / "scores.json").write_text(json.dumps(scores))
    (folder / "curves.png").write_bytes(PNG)
    (folder / "confusion.png").write_bytes(PNG)
    return folder


class ConsoleTest(AsyncHTTPTestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="antispam-console-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.model_dir = self.tmp / "models" / "cnn"
        self.model_dir.mkdir(parents=True)
        self.report_dir = self.tmp / "reports"
        # Something outside the model folder a traversal would like to read.
        (self.tmp / "secret.json").write_text('{"TOP-SECRET-CONTENT": true}')
        self.backend = FakeBackend(version=2)
        self.store = FakeFeedbackStore()
        super().setUp()

    def get_app(self):
        config = ServeConfig(model_base=str(self.tmp / "models"), model_name="cnn",
                             report_dir=str(self.report_dir), cache_size=100)
        return make_app(config, self.backend, feedback_store=self.store)

    def get(self, path: str) -> tuple[int, Any, Any]:
        response = self.fetch(path, follow_redirects=False)
        body = response.body
        if response.headers.get("Content-Type", "").startswith("application/json"):
            body = json.loads(body)
        return response.code, body, response.headers

    def assert_not_found(self, path: str) -> None:
        status, body, headers = self.get(path)
        self.assertEqual(status, 404, path)
        self.assertTrue(headers["Content-Type"].startswith("application/json"), path)
        self.assertEqual(body["error"]["code"], "not_found", path)
        self.assertNotIn(b"TOP-SECRET-CONTENT", json.dumps(body).encode(), path)

    # -- the page ------------------------------------------------------------------------------

    def test_console_redirects_to_the_page_relative_to_where_it_is(self):
        status, _body, headers = self.get("/console")
        self.assertEqual((status, headers["Location"]), (302, "console/"))

    def test_static_files_with_their_content_types(self):
        expected = {"/console/": "text/html; charset=UTF-8", "/console/index.html": "text/html; charset=UTF-8",
                    "/console/console.js": "text/javascript; charset=UTF-8",
                    "/console/console.css": "text/css; charset=UTF-8", "/console/favicon.svg": "image/svg+xml"}
        for path, content_type in expected.items():
            status, body, headers = self.get(path)
            self.assertEqual((status, headers["Content-Type"]), (200, content_type), path)
            self.assertEqual(headers["X-Content-Type-Options"], "nosniff")
            self.assertEqual(headers["Cache-Control"], "no-cache")
            self.assertTrue(body)
        page = self.get("/console/")[1].decode()
        self.assertIn('<script src="console.js" defer></script>', page)

    def test_csp_forbids_inline_code_and_other_origins_on_every_console_answer(self):
        for path in ("/console/", "/console/console.js", "/console/api/info", "/console/nope.js",
                     "/console/api/versions/9"):
            csp = self.get(path)[2]["Content-Security-Policy"]
            self.assertEqual(csp, handlers.CSP, path)
        directives = dict(d.strip().split(" ", 1) for d in handlers.CSP.split(";"))
        self.assertEqual(directives["default-src"], "'self'")
        self.assertNotIn("unsafe-inline", handlers.CSP)
        self.assertNotIn("unsafe-eval", handlers.CSP)
        # The API's own routes are not the console's business.
        self.assertNotIn("Content-Security-Policy", self.get("/healthz")[2])

    def test_the_page_has_no_inline_script_or_style(self):
        for name in ("index.html", "favicon.svg"):
            text = handlers.load_static()[name][0].decode()
            self.assertNotIn("<style", text)
            self.assertNotIn(" style=", text)
            self.assertNotRegex(text, r"<script(?![^>]*\bsrc=)")
            self.assertNotRegex(text, r"\son[a-z]+=")
        for name, (body, _type) in handlers.load_static().items():
            self.assertNotIn(b"http://", body.replace(b"http://www.w3.org/", b""), name)  # nothing from elsewhere
            self.assertNotIn(b"https://", body, name)

    def test_an_unchanged_file_revalidates_to_304(self):
        first = self.fetch("/console/console.js")
        again = self.fetch("/console/console.js", headers={"If-None-Match": first.headers["Etag"]})
        self.assertEqual(again.code, 304)

    def test_path_traversal_and_unknown_files_are_404_json(self):
        for path in ("/console/nope.js", "/console/..%2F..%2Fsecret.json", "/console/%2e%2e",
                     "/console/..", "/console/static/console.js", "/console/handlers.py", "/console/__init__.py",
                     "/console/live.py", "/console/console.js/", "/console/api", "/console/api/",
                     "/console/api/versions/..%2F..%2Fsecret.json", "/console/api/versions/1%2F..",
                     "/console/api/versions/-1", "/console/api/versions/1.5", "/console/api/versions/1e3",
                     "/console/api/versions/%31", "/console/api/versions/9999999999",
                     "/console/api/versions/1/report/..%2F..%2Fsecret.json",
                     "/console/api/versions/1/report/scores.json", "/console/api/versions/1/metrics.json"):
            self.assert_not_found(path)

    def test_only_get(self):
        response = self.fetch("/console/api/info", method="POST", body=b"{}",
                              headers={"Content-Type": "application/json"})
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers["Allow"], "GET")
        self.assertEqual(json.loads(response.body)["error"]["code"], "method_not_allowed")

    # -- info ----------------------------------------------------------------------------------

    def test_info_tells_the_thresholds_limits_and_that_there_are_no_policies(self):
        status, body, _ = self.get("/console/api/info")
        data = body["data"]
        self.assertEqual(status, 200)
        # A version without operating points (the tiny test model): the legacy thresholds, said so.
        self.assertEqual(data["thresholds"], {"review": 0.5, "block": 0.9, "source": "legacy",
                                              "version": data["thresholds"]["version"], "min_tokens_to_block": 3})
        self.assertEqual(data["limits"], {"max_texts": 100, "max_chars": 5000})
        self.assertEqual((data["policies"], data["feedback"], data["model"]), ([], True, "cnn"))
        self.assertEqual(data["promotion_log"], str(self.model_dir / "promotion.jsonl"))

    # -- versions ------------------------------------------------------------------------------

    def test_unknown_version_is_404_json(self):
        write_version(self.model_dir, 1, {"test": TEST_SCORES})
        self.assert_not_found("/console/api/versions/2")
        self.assert_not_found("/console/api/versions/0")
        # A folder without saved_model.pb is not a version (a half-written or foreign folder).
        (self.model_dir / "3" / "assets.extra").mkdir(parents=True)
        (self.model_dir / "3" / "assets.extra" / "metrics.json").write_text("{}")
        self.assert_not_found("/console/api/versions/3")
        self.assertEqual(self.get("/console/api/versions/1")[0], 200)
        self.assertEqual(self.get("/console/api/versions/001")[0], 200)  # the number, not the spelling

    def test_version_detail_is_its_metrics_json(self):
        metrics = {"model": "cnn", "exported_at": "2025-11-29T10:13:00+00:00", "test": TEST_SCORES, **RUN}
        write_version(self.model_dir, 1, metrics)
        status, body, _ = self.get("/console/api/versions/1")
        data = body["data"]
        self.assertEqual(status, 200)
        self.assertEqual(data["metrics"], metrics)
        self.assertIsNone(data["metrics_problem"])
        self.assertEqual((data["version"], data["model"]), (1, "cnn"))
        self.assertEqual(data["report"]["images"], {})
        self.assertIn("no training report", data["report"]["note"])

    def test_version_without_or_with_broken_metrics(self):
        write_version(self.model_dir, 1, None)
        folder = write_version(self.model_dir, 2, None)
        (folder / "assets.extra" / "metrics.json").write_text("{not json")
        first = self.get("/console/api/versions/1")[1]["data"]
        second = self.get("/console/api/versions/2")[1]["data"]
        self.assertEqual((first["metrics"], first["metrics_problem"]), (None, "no metrics.json"))
        self.assertIsNone(second["metrics"])
        self.assertIn("unreadable", second["metrics_problem"])

    def test_version_list_newest_first_with_headline_scores(self):
        write_version(self.model_dir, 1, {"test": TEST_SCORES, "exported_at": "a"})
        write_version(self.model_dir, 3, {"test": {**TEST_SCORES, "f1": 0.97}, "retrain": {"decision": "publish"}})
        (self.model_dir / ".highest_version").write_text("4")
        (self.model_dir / ".staging-abc").mkdir()
        data = self.get("/console/api/versions")[1]["data"]
        self.assertEqual([v["version"] for v in data["versions"]], [3, 1])
        self.assertEqual((data["count"], data["high_water_mark"]), (2, 4))
        self.assertEqual(data["versions"][0]["test"]["f1"], 0.97)
        self.assertEqual((data["versions"][0]["retrain"], data["versions"][1]["retrain"]), (True, False))

    def test_report_images_are_served_for_the_run_that_made_the_version_only(self):
        write_version(self.model_dir, 1, {"test": TEST_SCORES, **RUN})
        write_report(self.report_dir, "cnn", 1, {"version": 1, **RUN, "test": TEST_SCORES})
        data = self.get("/console/api/versions/1")[1]["data"]
        self.assertEqual(data["report"]["images"], {"curves": "console/api/versions/1/report/curves.png",
                                                    "confusion": "console/api/versions/1/report/confusion.png"})
        for kind in ("curves", "confusion"):
            status, body, headers = self.get(f"/console/api/versions/1/report/{kind}.png")
            self.assertEqual((status, headers["Content-Type"], body), (200, "image/png", PNG))
        self.assertEqual(self.get("/console/api/versions")[1]["data"]["versions"][0]["report_images"],
                         ["confusion", "curves"])

        # The same number from another run (another model folder, an older train): not shown.
        write_version(self.model_dir, 2, {"test": TEST_SCORES, **RUN, "wall_seconds": 99.0})
        write_report(self.report_dir, "cnn", 2, {"version": 2, **RUN})
        data = self.get("/console/api/versions/2")[1]["data"]
        self.assertEqual(data["report"]["images"], {})
        self.assertIn("another training run", data["report"]["note"])
        self.assert_not_found("/console/api/versions/2/report/curves.png")

        # A version without the run's fingerprint (tiny test models, old exports): never matched.
        write_version(self.model_dir, 3, {"test": TEST_SCORES})
        write_report(self.report_dir, "cnn", 3, {"version": 3})
        self.assertEqual(self.get("/console/api/versions/3")[1]["data"]["report"]["images"], {})
        self.assert_not_found("/console/api/versions/3/report/curves.png")
        # An image of a version that is gone (rolled back) is not served either.
        shutil.rmtree(self.model_dir / "1")
        self.assert_not_found("/console/api/versions/1/report/curves.png")

    def test_report_file_names_are_the_trainers(self):
        from antispam.network import report

        self.assertEqual(handlers.REPORT_IMAGES, {"curves": report.CURVES_FILE, "confusion": report.CONFUSION_FILE})
        self.assertEqual(handlers.REPORT_SCORES, report.SCORES_FILE)

    # -- promotion log -------------------------------------------------------------------------

    def test_promotions_are_the_last_lines_parsed(self):
        status, body, _ = self.get("/console/api/promotions")
        self.assertEqual((status, body["data"]["exists"], body["data"]["records"]), (200, False, []))
        lines = [json.dumps({"time": f"2025-11-{i:02d}T03:00:00+00:00", "decision": "publish", "version": i})
                 for i in range(1, 31)]
        lines.insert(28, "this is not json")
        (self.model_dir / "promotion.jsonl").write_text("\n".join(lines) + "\n\n")
        data = self.get("/console/api/promotions?limit=4")[1]["data"]
        self.assertTrue(data["exists"])
        records = data["records"]
        self.assertEqual(len(records), 4)
        self.assertEqual(records[0]["version"], 28)
        self.assertEqual(records[1], {"unparsed": "this is not json", "problem": "this line is not a JSON object"})
        self.assertEqual([r["version"] for r in records[2:]], [29, 30])
        self.assertEqual(len(self.get("/console/api/promotions")[1]["data"]["records"]), 20)
        for bad in ("0", "201", "x", "-1", "2.5"):
            status, body, _ = self.get(f"/console/api/promotions?limit={bad}")
            self.assertEqual((status, body["error"]["code"]), (400, "invalid_request"), bad)

    def test_promotions_written_before_issue_21_are_shown_without_texts(self):
        old = {"time": "2025-11-01T03:00:00+00:00", "decision": "reject", "conflict_count": 1,
               "conflicts": [{"normalized": "加微信xxxxxxxxxxx", "text": "加微信13800138000", "counts": {"spam": 1}}]}
        (self.model_dir / "promotion.jsonl").write_text(json.dumps(old, ensure_ascii=False) + "\n", encoding="utf-8")
        [record] = self.get("/console/api/promotions")[1]["data"]["records"]
        [conflict] = record["conflicts"]
        self.assertEqual(set(conflict), {"sha256", "excerpt", "counts"})
        self.assertNotIn("13800138000", json.dumps(record))
        self.assertEqual(conflict["excerpt"], "加微信00000000000")

    def test_tail_reads_only_the_end_of_a_long_log(self):
        path = self.tmp / "log.jsonl"
        path.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(10000)))
        self.assertEqual(handlers.tail_lines(path, 2, max_bytes=100), [b'{"n": 9998}', b'{"n": 9999}'])
        lines = handlers.tail_lines(path, 1000, max_bytes=100)
        self.assertTrue(all(line.startswith(b'{"n": 99') for line in lines))  # never a cut line

    # -- live ----------------------------------------------------------------------------------

    def test_live_summary_counts_what_the_app_did(self):
        json_headers = {"Content-Type": "application/json"}
        self.fetch("/predict?text=代开发票")
        self.fetch("/predict?text=代开发票")  # a cache hit
        self.fetch("/predict", method="POST", headers=json_headers,
                   body=json.dumps({"texts": ["妈妈回家吃饭", "贷款优惠 代开发票 速来"]}))
        self.fetch("/predict?text=!!!")  # 400 empty_text
        self.fetch("/feedback", method="POST", headers=json_headers, body=json.dumps({"text": "代开", "label": "spam"}))
        self.backend.error = RuntimeError("boom")
        self.fetch("/predict?text=新的文本")  # 500
        status, body, _ = self.get("/console/api/live?minutes=1")
        self.assertEqual(status, 200)
        data = body["data"]
        window = data["window"]
        self.assertEqual(window["predict"]["requests"], 5)
        self.assertEqual(window["predict"]["texts"], 5)  # texts that reached the scorer (the 500 too)
        # FakeBackend: 0.95 for texts with a spam word (block; "代开发票" is one token: review,
        # min_tokens_to_block), 0.05 otherwise.
        self.assertEqual(sum(window["verdicts"].values()), 4)
        self.assertEqual(window["cache"], {"hits": 1, "misses": 4, "hit_rate": 0.2})
        self.assertEqual(window["by_route"]["feedback"], 1)
        self.assertEqual((window["errors"]["client"], window["errors"]["server"]), (1, 1))
        self.assertEqual(window["by_status"]["202"], 1)
        latency = window["predict"]["latency_ms"]
        self.assertTrue(0 < latency["p50"] <= latency["p99"] <= 5000)
        self.assertIn("histogram", data["latency_method"])
        self.assertEqual(data["sampling"], "timer")  # the first console request started the timer
        self.assertEqual(data["since_start"]["predict"]["requests"], 5)

    def test_live_says_its_verdicts_are_this_process_without_a_shared_log(self):
        status, body, _ = self.get("/console/api/live?minutes=1")
        self.assertEqual(status, 200)
        self.assertEqual(body["data"]["shared"], {"source": "process", "why": "the decision log is off"})
        self.assertEqual(body["data"]["process"]["pid"], os.getpid())

    def test_live_refuses_bad_windows(self):
        for bad in ("0", "-1", "11", "x", "nan"):
            status, body, _ = self.get(f"/console/api/live?minutes={bad}")
            self.assertEqual((status, body["error"]["code"]), (400, "invalid_request"), bad)
        self.assertEqual(self.get("/console/api/live?minutes=0.5")[0], 200)

    def test_console_requests_count_under_their_own_route(self):
        self.fetch("/console/")
        self.fetch("/console/api/info")
        metrics = self.fetch("/metrics").body.decode()
        self.assertIn('antispam_requests_total{method="GET",route="console",status="200"} 2.0', metrics)
        self.assertIn('antispam_verdicts_total', metrics)


class CampaignsConsoleTest(AsyncHTTPTestCase):
    """Issue 24 item 4: the Campaigns view's data and the one-click "block this contact"."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="antispam-console-campaigns-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.lists = self.tmp / "lists"
        (self.tmp / "models" / "cnn").mkdir(parents=True)
        super().setUp()

    def get_app(self):
        config = ServeConfig(model_base=str(self.tmp / "models"), model_name="cnn", lists_dir=str(self.lists),
                             cache_size=0, lists_poll_seconds=3600.0)
        self.app = make_app(config, FakeBackend(version=2))
        return self.app

    def tracker(self) -> Any:
        from antispam.campaigns import MemoryTracker

        tracker = MemoryTracker(window_seconds=600, min_senders=3)
        self.app.services.scorer.campaigns = tracker
        return tracker

    def observe(self, tracker: Any, text: str, senders: int) -> None:
        from antispam.contacts import find_contacts
        from antispam.text import normalize

        for i in range(senders):
            tracker.observe(text, normalize(text), find_contacts(text), f"sender-{text[:4]}-{i}")

    def get_json(self, path: str) -> tuple[int, Any]:
        response = self.fetch(path)
        return response.code, json.loads(response.body)

    def post_json(self, path: str, payload: Any, content_type: str = "application/json") -> tuple[int, Any]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        response = self.fetch(path, method="POST", body=body, headers={"Content-Type": content_type})
        return response.code, json.loads(response.body)

    def test_campaigns_largest_first_with_contacts_and_whether_listed(self):
        tracker = self.tracker()
        big = "本店新品上市全场八折优惠，欢迎新老顾客光临选购，咨询电话13800138000"
        small = "低息贷款当天放款，无抵押无担保，详情请联系王经理，加微信 abc_12345"
        self.observe(tracker, big, 6)
        self.observe(tracker, small, 4)
        self.observe(tracker, "妈妈我们明天回家吃晚饭，记得买菜", 1)  # below the threshold
        self.lists.mkdir()
        (self.lists / "block.txt").write_text("138-0013-8000\n", encoding="utf-8")
        status, body = self.get_json("/console/api/campaigns?limit=5")
        self.assertEqual(status, 200)
        data = body["data"]
        self.assertEqual((data["window_seconds"], data["min_senders"]), (600, 3))
        texts = [c["example"]["text"] for c in data["campaigns"]]
        self.assertEqual(texts, [big, small])  # one entry per campaign, not one per counter
        self.assertEqual([(c["by"], c["counters"]) for c in data["campaigns"]],
                         [(["contact", "text"], 2), (["contact", "text"], 2)])
        self.assertEqual(data["active_counters"], 4)
        self.assertNotIn("妈妈我们明天回家吃晚饭，记得买菜", texts)
        first = data["campaigns"][0]
        self.assertEqual(first["senders"], 6)
        contact = first["example"]["contacts"][0]
        self.assertEqual((contact["kind"], contact["value"]), ("mobile", "13800138000"))
        self.assertEqual(big[contact["start"]:contact["end"]], "13800138000")  # offsets into the example
        self.assertTrue(contact["listed"])  # as 138-0013-8000: the same term
        other = next(c for c in data["campaigns"] if c["example"]["text"] == small)
        self.assertEqual([(c["kind"], c["listed"]) for c in other["example"]["contacts"]], [("wechat", False)])
        # The tracker's own example was not changed by the answer.
        self.assertNotIn("listed", tracker.top(1)[0]["example"]["contacts"][0])
        self.assertEqual(len(self.get_json("/console/api/campaigns?limit=1")[1]["data"]["campaigns"]), 1)

    def test_counters_of_one_campaign_are_merged(self):
        def entry(by: str, senders: int, text: str, *values: str) -> dict[str, Any]:
            contacts = [{"kind": "mobile", "value": v, "start": 0, "end": 1} for v in values]
            return {"key": f"{by}:{text}", "by": by, "size": senders, "senders": senders, "first_seen": 100.0 - senders,
                    "example": {"text": text, "contacts": contacts}}

        merged = handlers.merge_campaigns([
            entry("text", 9, "广告A", "13800138000"),
            entry("contact", 8, "广告B", "13900139000"),  # another campaign so far
            entry("contact", 7, "广告A", "13800138000"),  # A's phone counter
            entry("text", 6, "广告C", "13900139000", "13800138000"),  # shares a phone with A and with B
            entry("text", 3, "你好"),
        ])
        self.assertEqual([(m["example"]["text"], m["senders"], m["by"], m["counters"]) for m in merged],
                         [("广告A", 9, ["contact", "text"], 4), ("你好", 3, ["text"], 1)])
        self.assertEqual(merged[0]["first_seen"], 91.0)

    def test_no_campaign_yet_and_bad_limits(self):
        status, body = self.get_json("/console/api/campaigns")
        self.assertEqual((status, body["data"]["campaigns"], body["data"]["active_counters"]), (200, [], 0))
        for bad in ("0", "51", "x", "-1"):
            status, body = self.get_json(f"/console/api/campaigns?limit={bad}")
            self.assertEqual((status, body["error"]["code"]), (400, "invalid_request"), bad)

    def test_block_a_contact_then_the_lists_block_it(self):
        text = "低息贷款当天放款，加微信 abc_12345"
        before = self.post_json("/predict", {"text": text})[1]["data"]
        self.assertEqual(before["decided_by"], "model")
        status, body = self.post_json("/console/api/blocklist", {"kind": "wechat", "value": "ABC_12345"})
        self.assertEqual(status, 200)
        data = body["data"]
        self.assertEqual((data["term"], data["added"], data["list_set"]), ("abc_12345", True, "default"))
        self.assertEqual(Path(data["file"]), self.lists / "block.txt")
        self.assertIn("abc_12345\n", (self.lists / "block.txt").read_text(encoding="utf-8"))
        # This worker reloaded at once (the poll interval here is an hour).
        after = self.post_json("/predict", {"text": text})[1]["data"]
        self.assertEqual((after["decided_by"], after["suggestion"]), ("block_list", "block"))
        # Idempotent: the same contact again adds nothing.
        status, body = self.post_json("/console/api/blocklist", {"kind": "wechat", "value": "abc_12345"})
        self.assertEqual((status, body["data"]["added"]), (200, False))
        self.assertEqual((self.lists / "block.txt").read_text(encoding="utf-8").count("abc_12345"), 1)

    def test_block_list_bad_input_is_4xx_json(self):
        cases = [
            ({"kind": "mobile", "value": "123"}, 400, "invalid_request"),
            ({"kind": "mobile"}, 400, "invalid_request"),
            ({"kind": "fax", "value": "13800138000"}, 400, "invalid_request"),
            ({"kind": "wechat", "value": "re:.*"}, 400, "invalid_request"),
            ({"kind": "mobile", "value": "13800138000", "list_set": "../../etc"}, 400, "invalid_request"),
            ({"kind": "mobile", "value": 13800138000}, 400, "invalid_request"),
            ([1, 2], 400, "invalid_request"),
            (b"{not json", 400, "malformed_json"),
        ]
        for payload, status, code in cases:
            got = self.post_json("/console/api/blocklist", payload)
            self.assertEqual((got[0], got[1]["error"]["code"]), (status, code), payload)
        got = self.post_json("/console/api/blocklist", {"kind": "mobile", "value": "13800138000"}, "text/plain")
        self.assertEqual((got[0], got[1]["error"]["code"]), (415, "unsupported_media_type"))
        self.assertFalse((self.lists / "block.txt").exists())
        response = self.fetch("/console/api/blocklist")
        self.assertEqual((response.code, response.headers["Allow"]), (405, "POST"))


class LiveAcrossProcessesTest(AsyncHTTPTestCase):
    """Issue 23: with the decision log in PostgreSQL, the Live view's verdicts and rates are every
    process's. The other process is a second DecisionLog writing into the same schema (what
    another worker's or replica's writer does); tests/e2e/test_decision_log.py runs real ones."""

    def setUp(self) -> None:
        if not os.environ.get(POSTGRES_ENV):
            self.skipTest(f"{POSTGRES_ENV} is not set: no PostgreSQL server for this run (.ci/run starts one)")
        self.url, drop = fresh_schema(os.environ[POSTGRES_ENV])
        self.addCleanup(drop)
        self.tmp = Path(tempfile.mkdtemp(prefix="antispam-console-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.report_dir = self.tmp / "reports"
        self.backend = FakeBackend(version=2)
        super().setUp()

    get = ConsoleTest.get

    def get_app(self):
        self.pg_store = open_store(self.url)
        self.addCleanup(self.pg_store.close)
        self.log = DecisionLog(self.pg_store, linger=0.0)
        self.addCleanup(self.log.close, 5)
        config = ServeConfig(model_base=str(self.tmp / "models"), model_name="cnn",
                             report_dir=str(self.report_dir), cache_size=100)
        return make_app(config, self.backend, feedback_store=self.pg_store, decision_log=self.log)

    def test_verdicts_and_rates_come_from_the_log_of_every_process(self):
        other_store = open_store(self.url)
        self.addCleanup(other_store.close)
        other = DecisionLog(other_store, linger=0.0)
        now = time.time()
        other.submit([Decision(request_id=f"other-{i}", index=0, time=now, key_id="k", policy="default",
                               model_name="cnn", model_version=2, probability=0.99, suggestion="block",
                               decided_by="block_list", text_sha256=text_sha256(str(i))) for i in range(7)])
        self.assertTrue(other.close(5))
        json_headers = {"Content-Type": "application/json"}
        self.fetch("/predict", method="POST", headers=json_headers,
                   body=json.dumps({"texts": ["妈妈回家吃饭", "今天天气很好"]}))
        deadline = time.monotonic() + 10
        while self.log.written < 2:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        status, body, _ = self.get("/console/api/live?minutes=1")
        self.assertEqual(status, 200)
        data = body["data"]
        shared = data["shared"]
        self.assertEqual((shared["source"], shared["texts"], shared["requests"]), ("decision_log", 9, 8))
        self.assertEqual(shared["verdicts"], {"block": 7, "pass": 2})
        self.assertEqual(shared["decided_by"], {"block_list": 7, "model": 2})
        self.assertEqual(shared["texts_per_second"], round(9 / 60, 4))
        self.assertTrue(shared["store"].startswith("postgresql://"))
        self.assertEqual(sum(data["window"]["verdicts"].values()), 2)  # this process's own, still there

    def test_a_store_that_does_not_answer_falls_back_to_this_process(self):
        services = self._app.services  # type: ignore[attr-defined]
        dead = open_store("postgresql://postgres@127.0.0.1:9/nowhere", timeout=1.0)
        self.addCleanup(dead.close)
        services.decision_store = dead
        started = time.monotonic()
        status, body, _ = self.get("/console/api/live?minutes=1")
        self.assertEqual(status, 200)
        self.assertEqual(body["data"]["shared"]["source"], "process")
        self.assertIn("did not answer", body["data"]["shared"]["why"])
        self.assertLess(time.monotonic() - started, 3.0)
