"""Sender context and campaigns through real HTTP with a fake backend (docs/contracts.md#campaigns):
ids checked (400 JSON), never echoed, the default answer unchanged, the campaign field and what
policies do with it, and the metrics."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from antispam.testing.fakes import FakeBackend
from tests.service.test_app import ApiTestCase

pytestmark = pytest.mark.service

GREETING = "祝大家新年快乐，万事如意，身体健康，阖家幸福！"  # the model says pass (0.05)
AD = "本店新到一批名牌包包，质量保证，价格优惠，加微信 abc12345 详聊"  # no model words: pass too
INVOICE = "专业代开各类发票，当天出票，欢迎来电咨询"  # the model says block (0.95)
ITEM_KEYS = {"text", "predict", "label", "spam_probability", "suggestion", "model", "coverage", "decided_by",
             "policy"}


NOTICE = "您的快件已到菜鸟驿站，请凭取件码于今天八点前领取，兼职勿扰"  # the model says review (0.7)
HOTLINE = "本店周年庆全场八折，会员另有好礼相送，详询客服热线 400-812-3456"  # an allowed number


def score(tokens) -> float:
    if "兼职" in tokens:
        return 0.7
    return 0.95 if {"发票", "代开"} & set(tokens) else 0.05


class CampaignsApiTest(ApiTestCase):
    settings = {"campaign_min_senders": 3, "sender_key": "k" * 16}

    def make_backend(self):
        policies = self.tmp / "policies.json"
        policies.write_text(json.dumps({"review": {"campaign": "review"}, "block": {"campaign": "block"}}),
                            encoding="utf-8")
        self.config.policies_file = str(policies)
        lists = self.tmp / "lists"
        lists.mkdir()
        (lists / "allow.txt").write_text("400-812-3456\n", encoding="utf-8")
        self.config.lists_dir = str(lists)
        return FakeBackend(score)

    def predict(self, text: str, **params: str) -> dict:
        status, body = self.call("/predict?" + urllib.parse.urlencode({"text": text, **params}))
        assert status == 200, body
        return body["data"]

    def test_without_sender_nothing_is_counted_and_the_answer_is_unchanged(self):
        for _ in range(5):
            item = self.predict(AD)
        self.assertEqual(set(item), ITEM_KEYS)
        self.assertEqual(self._app.services.scorer.campaigns.top(5), [])

    def test_campaign_field_once_the_senders_cross_the_threshold(self):
        items = [self.predict(AD + "🔥" * i, sender_id=f"user-{i}") for i in range(4)]
        self.assertEqual([("campaign" in i) for i in items], [False, False, True, True])
        self.assertEqual(set(items[0]), ITEM_KEYS)  # no sender id, room id or hash in the answer
        campaign = items[3]["campaign"]
        self.assertEqual((campaign["size"], campaign["senders"], campaign["by"]), (4, 4, "contact"))
        self.assertIsInstance(campaign["first_seen"], float)
        self.assertEqual(items[3]["suggestion"], "pass")  # default policy: mark only
        self.assertNotIn("contacts", items[3])
        body = json.dumps(items)
        self.assertNotIn("user-", body)
        self.assertEqual(self.metric("antispam_campaigns_active"), 2.0)  # the text cluster and the WeChat id
        self.assertEqual(self.metric("antispam_campaign_items_total", by="contact", suggestion="pass"), 2.0)

    def test_same_sender_many_times_is_no_campaign(self):
        for _ in range(6):
            item = self.predict(AD, sender_id="one-sender")
        self.assertNotIn("campaign", item)

    def test_post_per_text_senders_and_policies(self):
        texts = [GREETING] * 4
        status, body = self.call("/predict", "POST", {"texts": texts, "sender_ids": ["a", "b", "c", "d"],
                                                      "room_ids": ["r1", None, "r1", "r2"], "policy": "block"})
        self.assertEqual(status, 200, body)
        got = [(i.get("campaign", {}).get("senders"), i["suggestion"], i["decided_by"]) for i in body["data"]]
        # a greeting from many senders: no contact, no model evidence -> review, never block
        self.assertEqual(got, [(None, "pass", "model"), (None, "pass", "model"), (3, "review", "campaign"),
                               (4, "review", "campaign")])
        status, body = self.call("/predict", "POST", {"texts": [AD] * 3, "sender_id": "x", "policy": "block"})
        self.assertNotIn("campaign", body["data"][2])  # one sender for every text
        status, body = self.call("/predict", "POST", {"texts": [AD] * 3, "sender_ids": ["p", "q", "r"],
                                                      "policy": "block"})
        last = body["data"][2]
        self.assertEqual((last["suggestion"], last["decided_by"]), ("block", "campaign"))  # a contact
        item = self.predict(AD, sender_id="s", policy="review")
        self.assertEqual((item["suggestion"], item["decided_by"]), ("review", "campaign"))

    def test_without_a_contact_the_model_review_is_not_raised_and_a_model_block_stays(self):
        for i in range(3):
            notice = self.predict(NOTICE, sender_id=f"n{i}", policy="block")
            invoice = self.predict(INVOICE, sender_id=f"u{i}", policy="block")
        self.assertEqual((notice["suggestion"], notice["decided_by"], notice["campaign"]["senders"]),
                         ("review", "model", 3))
        self.assertEqual((invoice["suggestion"], invoice["decided_by"], invoice["campaign"]["senders"]),
                         ("block", "model", 3))

    def test_an_allowed_contact_does_not_make_a_campaign_block(self):
        for i in range(3):
            item = self.predict(HOTLINE, sender_id=f"h{i}", policy="block")
        # the allowed hotline is not counted (no campaign "by contact"); the shared wording is
        self.assertEqual((item["campaign"]["senders"], item["campaign"]["by"]), (3, "text"))
        self.assertEqual((item["suggestion"], item["decided_by"]), ("review", "campaign"))
        self.assertEqual(self.metric("antispam_campaigns_active"), 1.0)

    def test_bad_ids_are_400_naming_them(self):
        long = "x" * 129
        for result in (self.call("/predict?" + urllib.parse.urlencode({"text": "hi", "sender_id": long})),
                       self.call("/predict?" + urllib.parse.urlencode({"text": "hi", "room_id": ""})),
                       self.call("/predict", "POST", {"text": "hi", "sender_id": 5}),
                       self.call("/predict", "POST", {"text": "hi", "room_id": ["a"]}),
                       self.call("/predict", "POST", {"text": "hi", "sender_ids": ["a"]}),
                       self.call("/predict", "POST", {"texts": ["hi", "yo"], "sender_ids": ["a"]}),
                       self.call("/predict", "POST", {"texts": ["hi"], "sender_ids": ["a"], "sender_id": "b"}),
                       self.call("/predict", "POST", {"texts": ["hi"], "room_ids": [7]})):
            self.assert_error(result, 400, "invalid_request")
            self.assertNotIn(long, result[1]["error"]["message"])
