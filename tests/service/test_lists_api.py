"""Term lists, policies and explanations through real HTTP with a fake backend
(docs/contracts.md#term-lists, #policies, #explanations)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.parse

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.testing import gen_test

from antispam.explain import token_offsets
from antispam.testing.fakes import FakeBackend
from tests.helpers.timing import within
from tests.service.test_app import ApiTestCase

pytestmark = pytest.mark.service


def with_lists(test: ApiTestCase) -> FakeBackend:
    """The lists and policies these tests share, in the test's folder; a fake backend (spam:
    0.95 for 发票, 贷款, 代开; else 0.05)."""
    lists = test.tmp / "lists"
    lists.mkdir()
    (lists / "block.txt").write_text("# shared\n加微信\nre:办.{0,2}证\n", encoding="utf-8")
    (lists / "allow.txt").write_text("官方客服\n400-812-3456\n加微信公众号\n", encoding="utf-8")
    (lists / "comments.block.txt").write_text("刷单\n", encoding="utf-8")
    policies = test.tmp / "policies.json"
    policies.write_text(json.dumps({"comments": {"review_threshold": 0.01, "block_threshold": 0.02},
                                    "legacy": {"allow_mode": "whole_text"},
                                    "strict": {"review_threshold": 0.01, "block_threshold": 0.99,
                                               "contact_escalates": True}}))
    test.config.lists_dir = str(lists)
    test.config.lists_poll_seconds = 0.0
    test.config.policies_file = str(policies)
    test.config.max_chars = 400
    return FakeBackend()


class ListsApiTest(ApiTestCase):
    def make_backend(self):
        return with_lists(self)

    def predict(self, text: str, **params: str):
        query = urllib.parse.urlencode({"text": text, **params})
        status, body = self.call("/predict?" + query)
        assert status == 200, body
        return body["data"]

    def test_block_list_decides_with_raw_offsets(self):
        text = "😀你好！加Ｖ信不行，加 微 信吧"
        item = self.predict(text)
        self.assertEqual((item["decided_by"], item["suggestion"], item["policy"]), ("block_list", "block", "default"))
        self.assertEqual(item["label"], "pass")  # the model's own class keeps its meaning
        [match] = item["matches"]
        self.assertEqual(text[match["start"]:match["end"]], "加 微 信")
        self.assertEqual((match["term"], match["list"], match["list_set"]), ("加微信", "block", "default"))

    def test_many_hits_are_capped(self):
        item = self.predict("加微信" * 60)
        self.assertEqual((len(item["matches"]), item["matches_total"]), (50, 60))
        self.assertEqual(item["matches"][-1]["start"], 49 * 3)

    def test_regex_and_surrogate_pairs(self):
        text = "𠀀😀办理假证件"
        item = self.predict(text)
        [match] = item["matches"]
        self.assertEqual(text[match["start"]:match["end"]], "办理假证")

    def test_an_allowed_phrase_does_not_exempt_the_rest_of_the_text(self):
        # Issue 21: appending an allowed phrase to an advert used to make it pass.
        item = self.predict("官方客服，加微信办理贷款")
        self.assertEqual((item["decided_by"], item["suggestion"]), ("block_list", "block"))
        self.assertEqual([(m["term"], m["list"]) for m in item["matches"]],
                         [("官方客服", "allow"), ("加微信", "block")])
        item = self.predict("马上办理贷款，官方客服")
        self.assertEqual((item["decided_by"], item["suggestion"], item["label"]), ("model", "block", "spam"))
        self.assertEqual([m["term"] for m in item["matches"]], ["官方客服"])  # the masked span (keys off: shown)
        # The text that is only allowed phrases passes on the allow list.
        item = self.predict("官方客服 400-812-3456")
        self.assertEqual((item["decided_by"], item["suggestion"]), ("allow_list", "pass"))
        self.assertEqual([m["term"] for m in item["matches"]], ["官方客服", "400-812-3456"])

    def test_the_model_reads_the_text_with_allowed_spans_masked_and_the_cache_keys_on_it(self):
        self.assertEqual(self.predict("官方客服你好呀")["decided_by"], "model")
        self.assertEqual(self.backend.calls[-1], [["你好", "呀"]])  # 官方客服 never reached the model
        calls = len(self.backend.calls)
        item = self.predict("你好呀")  # the same text the model read: a cache hit, not a backend call
        self.assertEqual(len(self.backend.calls), calls)
        self.assertEqual(item["coverage"]["tokens"], 2)
        # The unmasked text is another key: the model reads it whole.
        self.predict("官方客服你好呀", policy="legacy")
        self.assertEqual(self.backend.calls[-1], [["官方", "客服", "你好", "呀"]])

    def test_block_hits_inside_an_allowed_span_are_cancelled(self):
        item = self.predict("欢迎加微信公众号")
        self.assertEqual((item["decided_by"], item["suggestion"]), ("model", "pass"))
        self.assertEqual([(m["term"], m["list"]) for m in item["matches"]], [("加微信公众号", "allow")])
        # Outside the allowed span the block term still decides.
        self.assertEqual(self.predict("加微信公众号，加微信领红包")["decided_by"], "block_list")

    def test_an_allowed_hotline_does_not_escalate_but_another_contact_does(self):
        # Under "strict" every text of this fake is a model review (0.05 >= 0.01).
        item = self.predict("客服热线：400-812-3456，你好呀朋友们", policy="strict")
        self.assertEqual((item["decided_by"], item["suggestion"]), ("model", "review"))
        self.assertEqual([c["value"] for c in item["contacts"]], ["4008123456"])
        item = self.predict("客服热线：400-812-3456，你好呀，加QQ 12345678", policy="strict")
        self.assertEqual((item["decided_by"], item["suggestion"]), ("contact_escalation", "block"))
        item = self.predict("客服热线：400-812-3457，你好呀朋友们", policy="strict")  # not the allowed number
        self.assertEqual((item["decided_by"], item["suggestion"]), ("contact_escalation", "block"))

    def test_whole_text_allow_mode_is_an_explicit_policy_setting(self):
        item = self.predict("官方客服，加微信办理贷款", policy="legacy")
        self.assertEqual((item["decided_by"], item["suggestion"], item["label"]), ("allow_list", "pass", "spam"))
        self.assertEqual([m["term"] for m in item["matches"]], ["官方客服"])
        status, body = self.call("/lists")
        self.assertEqual((body["policies"]["legacy"]["allow_mode"], body["policies"]["default"]["allow_mode"]),
                         ("whole_text", "spans"))

    def test_the_pattern_work_of_a_request_is_bounded(self):
        # One re: pattern in the default policy's lists, 办.{0,2}证: 28 RE2 instructions.
        self.config.max_pattern_work = 150 * 28
        self.assertEqual(self.predict("你好" * 75)["decided_by"], "model")  # 150 characters: at the limit
        status, body = self.call("/predict", "POST", {"texts": ["你好" * 50, "你好" * 26]})
        self.assert_error((status, body), 413, "too_many_chars")
        message = body["error"]["message"]
        self.assertIn("4,256 units of pattern work (152 normalized characters × 28 RE2 instructions of the 1 "
                      "patterns of policy 'default'); the limit is 4,200", message)

    def test_model_decides_without_hits(self):
        item = self.predict("代开发票")
        self.assertEqual(item["decided_by"], "model")
        self.assertNotIn("matches", item)

    def test_policy_thresholds_and_lists(self):
        self.assertEqual(self.predict("今天刷单了")["decided_by"], "model")
        item = self.predict("今天刷单了", policy="comments")
        self.assertEqual((item["decided_by"], item["policy"]), ("block_list", "comments"))
        item = self.predict("你好呀朋友们", policy="comments")  # 0.05 >= block 0.02
        self.assertEqual((item["decided_by"], item["suggestion"]), ("model", "block"))
        status, body = self.call("/predict", "POST", {"texts": ["今天刷单了"], "policy": "comments"})
        self.assertEqual(body["data"][0]["decided_by"], "block_list")

    def test_unknown_policy_is_400_naming_the_known_ones(self):
        self.assert_error(self.call("/predict?text=hi&policy=nope"), 400, "unknown_policy")
        status, body = self.call("/predict", "POST", {"text": "hi", "policy": 3})
        self.assert_error((status, body), 400, "unknown_policy")
        self.assertIn("comments, default", body["error"]["message"])

    def test_get_lists(self):
        status, body = self.call("/lists")
        self.assertEqual(status, 200)
        self.assertEqual(body["sets"]["default"], {"block": 2, "allow": 3})
        self.assertEqual(body["sets"]["comments"], {"block": 1, "allow": 0})
        self.assertIn("block.txt", body["files"])
        self.assertEqual(body["policies"]["comments"]["lists"], ["default", "comments"])
        self.assertEqual(body["policies_file"]["file"], self.config.policies_file)
        self.assertNotIn("error", body["policies_file"])

    def test_the_hotline_number_no_longer_exempts_the_advert_around_it(self):
        # Issue 21's reproduction: the model (贷款) would block it; the allowed hotline used to pass it.
        for text in ("客服热线：400-812-3456，办理贷款加微信", "😀客服热线：４００－８１２－３４５６，办理贷款"):
            item = self.predict(text)
            self.assertNotEqual(item["suggestion"], "pass", text)
            self.assertEqual(item["suggestion"], "block", text)
        item = self.predict("😀客服热线：４００－８１２－３４５６，办理贷款")
        self.assertEqual((item["decided_by"], item["label"]), ("model", "spam"))
        [match] = item["matches"]  # the exempted span, raw offsets
        self.assertEqual((match["term"], match["list"]), ("400-812-3456", "allow"))
        self.assertEqual(item["text"][match["start"]:match["end"]], "４００－８１２－３４５６")
        item = self.predict("客服热线400 812 3456", explain="true")
        self.assertEqual((item["decided_by"], item["suggestion"]), ("model", "pass"))
        self.assertIn({"source": "allow_list", "term": "400-812-3456", "start": 4, "end": 16}, item["reasons"])
        self.assertEqual(self.predict("400 812 3456")["decided_by"], "allow_list")  # nothing else to judge
        # Another number, or the hotline inside a longer number, is not exempted.
        self.assertEqual(self.predict("客服热线4008123457，办理贷款加微信")["decided_by"], "block_list")
        self.assertEqual(self.predict("热线14008123456，加微信")["decided_by"], "block_list")

    def test_policies_are_reloaded_and_a_broken_file_keeps_them(self):
        path = self.tmp / "policies.json"
        self.assert_error(self.call("/predict?text=hi&policy=usernames"), 400, "unknown_policy")
        path.write_text(json.dumps({"usernames": {"review_threshold": 0.01, "block_threshold": 0.03}}))
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        item = self.predict("你好呀朋友们", policy="usernames")  # 0.05 >= block 0.03
        self.assertEqual((item["policy"], item["suggestion"]), ("usernames", "block"))
        self.assert_error(self.call("/predict?text=hi&policy=comments"), 400, "unknown_policy")
        path.write_text('{"usernames": {"block_threshold": "high"}}')
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
        status, body = self.call("/lists")
        self.assertIn("block_threshold must be a number", body["policies_file"]["error"])
        self.assertEqual(body["policies_file"]["serving"], "previous")
        self.assertEqual(body["policies"]["usernames"]["block_threshold"], 0.03)
        self.assertEqual(self.predict("你好呀朋友们", policy="usernames")["suggestion"], "block")

    @pytest.mark.timing
    @gen_test(timeout=30)
    async def test_requests_are_served_while_a_large_list_is_parsed(self):
        from antispam import lists

        real = lists.read_list_file
        parsing = threading.Event()

        def slow_read(path):
            parsing.set()
            time.sleep(1.0)  # in the worker thread
            return real(path)

        lists.read_list_file = slow_read
        self.addCleanup(setattr, lists, "read_list_file", real)
        path = self.tmp / "lists" / "block.txt"
        path.write_text("加微信\n代开\n", encoding="utf-8")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        client = AsyncHTTPClient()
        url = self.get_url("/predict?" + urllib.parse.urlencode({"text": "代开发票你好"}))
        first = asyncio.ensure_future(client.fetch(url))  # finds the change, waits for the parse
        while not parsing.is_set():
            await asyncio.sleep(0.01)
        started = time.monotonic()
        during = await client.fetch(url)  # served meanwhile, with the lists of before
        health = await client.fetch(self.get_url("/healthz"))
        self.assertLess(time.monotonic() - started, within(0.5))
        self.assertFalse(first.done())
        self.assertEqual(json.loads(during.body)["data"]["decided_by"], "model")
        self.assertEqual(health.code, 200)
        after = await first
        self.assertEqual(json.loads(after.body)["data"]["decided_by"], "block_list")  # the new lists

    def test_hot_reload_and_a_broken_file(self):
        path = self.tmp / "lists" / "block.txt"
        self.assertEqual(self.predict("代开发票你好")["decided_by"], "model")
        path.write_text("加微信\n代开\n", encoding="utf-8")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        self.assertEqual(self.predict("代开发票你好")["decided_by"], "block_list")
        path.write_text("加微信\nre:(\n", encoding="utf-8")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
        self.assertEqual(self.predict("代开发票你好")["decided_by"], "block_list")  # previous lists
        status, body = self.call("/lists")
        self.assertIn("line 2", body["files"]["block.txt"]["error"])

    def test_decision_metrics(self):
        self.predict("加微信")
        self.predict("今天刷单了", policy="comments")
        self.assertEqual(self.metric("antispam_decisions_total", policy="default", decided_by="block_list",
                                     suggestion="block"), 1.0)
        self.assertEqual(self.metric("antispam_decisions_total", policy="comments", decided_by="block_list",
                                     suggestion="block"), 1.0)

    def test_explain_tokens_and_windows(self):
        text = "①你好，辦理貸款！😀"
        item = self.predict(text, explain="true")
        model = [r for r in item["reasons"] if r["source"] == "model"]
        self.assertTrue(model)
        top = model[0]
        self.assertEqual(top["kind"], "token")
        self.assertEqual(text[top["start"]:top["end"]], "貸款")
        self.assertGreater(top["delta"], 0)
        long_text = "今天天气很好" * 12 + "办理贷款" + "我们去公园散步" * 10
        item = self.predict(long_text, explain="true")
        windows = [r for r in item["reasons"] if r["kind"] == "window"]
        self.assertEqual(len(windows), 3)
        self.assertIn("贷款", long_text[windows[0]["start"]:windows[0]["end"]])
        self.assertEqual(windows[0]["spam_probability"], 0.95)
        self.assertNotIn("reasons", self.predict(text))
        item = self.predict("加微信领券", explain="1")
        self.assertIn({"source": "block_list", "term": "加微信", "start": 0, "end": 3}, item["reasons"])

    def test_explain_offsets_of_a_masked_text_point_into_the_text_as_sent(self):
        text = "官方客服！辦理貸款😀吧"
        item = self.predict(text, explain="true")
        self.assertEqual(self.backend.calls[0], [["办理", "贷款", "吧"]])  # the masked text
        [top] = [r for r in item["reasons"] if r["source"] == "model"]  # the one token that moves it
        self.assertEqual((top["token"], text[top["start"]:top["end"]]), ("贷款", "貸款"))
        self.assertIn({"source": "allow_list", "term": "官方客服", "start": 0, "end": 4}, item["reasons"])

    def test_explain_windows_follow_the_served_versions_windowing(self):
        from antispam.features import Windowing

        long_text = "今天天气很好" * 12 + "办理贷款" + "我们去公园散步" * 10  # 78 tokens, 贷款 is token 37

        def top_windows():
            item = self.predict(long_text, explain="true")
            return [r["tokens"] for r in item["reasons"] if r["kind"] == "window"]

        self.assertEqual(top_windows()[:2], [[20, 40], [30, 50]])  # unknown windowing: stride 10
        self.backend.windowing = Windowing(stride=15)
        self.assertEqual(top_windows(), [[30, 50], [0, 20], [15, 35]])  # windows at 0, 15, 30, 45, 58
        self.backend.windowing = Windowing(stride=20, cap=1, aggregation="max", char_backoff=False)
        self.assertEqual(top_windows(), [[0, 20]])  # a first-20-tokens version reads one window

    def test_explain_limits(self):
        self.assert_error(self.call("/predict?text=hi&explain=maybe"), 400, "invalid_request")
        status, body = self.call("/predict", "POST", {"texts": ["你好"] * 5, "explain": True})
        self.assertEqual(status, 200)
        self.assertEqual(len(body["data"]), 5)  # as many as max_texts
        calls = len(self.backend.calls)
        from antispam import explain
        explain.EXPLAIN_ROWS_PER_CALL = 3
        try:
            status, body = self.call("/predict", "POST", {"texts": ["甲乙丙", "丁戊己"], "explain": True})
        finally:
            explain.EXPLAIN_ROWS_PER_CALL = 256
        self.assertEqual(status, 200)
        rows = [len(call) for call in self.backend.calls[calls:]]
        self.assertLessEqual(max(rows[1:]), 3)  # the explain rows went in calls of at most 3

    def test_explain_goes_through_the_scorers_guarded_call(self):
        """The explain rows' backend call is scoring's: its failures are counted in
        antispam_backend_errors_total by code and answered as 503s, and it gets the deadline."""
        from antispam.backends.base import Overloaded

        plain = self.backend.score

        def busy_on_explain(tokens):
            if len(self.backend.calls) > 1:  # call 1 scores the text, call 2 is explain's
                raise Overloaded("queue full")
            return plain(tokens)

        self.backend.score = busy_on_explain
        self.assert_error(self.call("/predict?text=甲乙丙&explain=true"), 503, "overloaded")
        self.assertEqual(self.metric("antispam_backend_errors_total", code="overloaded"), 1)

        def stall_on_explain(tokens):
            self.backend.delay = 5.0  # the next call (explain's) outlasts the 300 ms deadline
            return plain(tokens)

        self.backend.calls.clear()
        self.backend.score = stall_on_explain
        self.assert_error(self.call("/predict?text=明天下雨&explain=true"), 503, "deadline_exceeded")
        self.assertEqual(self.metric("antispam_backend_errors_total", code="deadline_exceeded"), 1)
        self.assertEqual(len(self.backend.calls), 2)


class AllowTermsWithKeysTest(ApiTestCase):
    """Keys on: which allow term matched is shown to admin keys only (issue 21)."""

    def make_backend(self):
        return with_lists(self)

    def get_app(self):
        from antispam.app import make_app
        from antispam.keys import KeyRing, add_key

        keys_file = self.tmp / "keys.tsv"
        self.keys = {name: add_key(keys_file, name, roles, 1000.0)
                     for name, roles in (("client", ["predict"]), ("root", ["admin"]))}
        return make_app(self.config, self.backend, feedback_store=self.store,
                        keyring=KeyRing(keys_file, poll_seconds=0.0))

    def as_(self, name: str, text: str, **params: str):
        query = urllib.parse.urlencode({"text": text, **params})
        status, body = self.call("/predict?" + query, headers={"Authorization": f"Bearer {self.keys[name]}"})
        assert status == 200, body
        return body["data"]

    def test_only_admin_sees_the_allow_terms(self):
        for text, decided_by in (("官方客服 400-812-3456", "allow_list"), ("官方客服你好", "model"),
                                 ("官方客服加微信", "block_list")):
            client, root = self.as_("client", text, explain="true"), self.as_("root", text, explain="true")
            self.assertEqual((client["decided_by"], root["decided_by"]), (decided_by, decided_by))
            self.assertEqual(client["suggestion"], root["suggestion"])
            self.assertNotIn("allow", json.dumps([client.get("matches"), client["reasons"]]), text)
            self.assertIn("官方客服", [m["term"] for m in root["matches"]])
            self.assertIn("allow_list", {r["source"] for r in root["reasons"]})
        client = self.as_("client", "官方客服加微信")
        self.assertEqual([m["term"] for m in client["matches"]], ["加微信"])  # block hits stay visible
        self.assertNotIn("matches", self.as_("client", "官方客服你好"))


def test_token_offsets():
    assert token_offsets("你好 加微信", ["你好", "加", "微信"]) == [(0, 2), (3, 4), (4, 6)]
