"""Contacts in /predict answers through real HTTP with a fake backend (docs/contracts.md#contacts):
the request flag, the policy settings, escalation, offsets into the text as sent, and the
default answer left as it was."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from antispam.errors import UserError
from antispam.policies import parse_policies
from antispam.testing.fakes import FakeBackend
from tests.service.test_app import ApiTestCase

pytestmark = pytest.mark.service

FULL_WIDTH = "兼职日结，详询１３８－００１３－８０００"  # the model says review (0.7) for 兼职
ITEM_KEYS = {"text", "predict", "label", "spam_probability", "suggestion", "model", "coverage", "decided_by",
             "policy"}


def score(tokens) -> float:
    if "兼职" in tokens:
        return 0.7
    return 0.95 if {"发票", "代开"} & set(tokens) else 0.05


class ContactsApiTest(ApiTestCase):
    def make_backend(self):
        policies = self.tmp / "policies.json"
        policies.write_text(json.dumps({
            "ads": {"contacts": True},
            "strict": {"contact_escalates": True},
        }), encoding="utf-8")
        self.config.policies_file = str(policies)
        return FakeBackend(score)

    def predict(self, text: str, **params: str) -> dict:
        status, body = self.call("/predict?" + urllib.parse.urlencode({"text": text, **params}))
        assert status == 200, body
        return body["data"]

    def test_default_answer_is_unchanged(self):
        item = self.predict(FULL_WIDTH)
        self.assertEqual(set(item), ITEM_KEYS)
        self.assertEqual(item, self.predict(FULL_WIDTH, contacts="false"))
        status, body = self.call("/predict", "POST", {"texts": [FULL_WIDTH, "你好"]})
        self.assertEqual([set(i) for i in body["data"]], [ITEM_KEYS, ITEM_KEYS])
        self.assertEqual(body["data"][0], item)

    def test_get_flag_gives_offsets_into_the_full_width_text(self):
        item = self.predict(FULL_WIDTH, contacts="true")
        [contact] = item["contacts"]
        self.assertEqual((contact["kind"], contact["value"]), ("mobile", "13800138000"))
        self.assertEqual(FULL_WIDTH[contact["start"]:contact["end"]], "１３８－００１３－８０００")
        self.assertEqual((contact["start"], contact["end"]), (7, 20))
        self.assertEqual({k: v for k, v in item.items() if k != "contacts"}, self.predict(FULL_WIDTH))
        self.assertEqual(self.predict("你好", contacts="1")["contacts"], [])

    def test_post_flag_in_body_and_query(self):
        texts = ["加微信：abc12345 或 QQ 12345678", "今天天气不错", "官网 www.888bet.com"]
        status, body = self.call("/predict", "POST", {"texts": texts, "contacts": True})
        self.assertEqual(status, 200, body)
        found = [[(c["kind"], c["value"]) for c in item["contacts"]] for item in body["data"]]
        self.assertEqual(found, [[("wechat", "abc12345"), ("qq", "12345678")], [], [("domain", "www.888bet.com")]])
        for text, item in zip(texts, body["data"]):
            for c in item["contacts"]:
                self.assertIn(c["value"].split(".")[-1], text[c["start"]:c["end"]].lower())
        status, body = self.call("/predict?contacts=true", "POST", {"text": texts[0]})
        self.assertEqual(len(body["data"]["contacts"]), 2)
        status, body = self.call("/predict?contacts=true", "POST", {"text": texts[0], "contacts": False})
        self.assertNotIn("contacts", body["data"])  # the body's value wins over the query's

    def test_a_bad_flag_is_a_400_naming_it(self):
        for result in (self.call("/predict?text=hi&contacts=yes"),
                       self.call("/predict", "POST", {"text": "hi", "contacts": 1}),
                       self.call("/predict", "POST", {"texts": ["hi"], "contacts": "maybe"})):
            self.assert_error(result, 400, "invalid_request")
            self.assertIn("contacts", result[1]["error"]["message"])

    def test_policy_setting_adds_contacts_without_the_flag(self):
        item = self.predict(FULL_WIDTH, policy="ads")
        self.assertEqual([c["value"] for c in item["contacts"]], ["13800138000"])
        self.assertEqual((item["suggestion"], item["decided_by"]), ("review", "model"))  # no escalation

    def test_contact_escalates_review_to_block(self):
        item = self.predict(FULL_WIDTH, policy="strict")
        self.assertEqual((item["suggestion"], item["decided_by"]), ("block", "contact_escalation"))
        self.assertEqual(item["label"], "spam")
        self.assertEqual(item["spam_probability"], 0.7)  # the model's own score is untouched
        self.assertEqual(len(item["contacts"]), 1)
        self.assertEqual(self.metric("antispam_decisions_total", policy="strict", decided_by="contact_escalation",
                                     suggestion="block"), 1.0)
        # Without a contact, or without review-level evidence, nothing changes.
        item = self.predict("兼职日结，欢迎来玩", policy="strict")
        self.assertEqual((item["suggestion"], item["decided_by"], item["contacts"]), ("review", "model", []))
        item = self.predict("明天见，电话 13800138000", policy="strict")
        self.assertEqual((item["suggestion"], item["decided_by"]), ("pass", "model"))
        # The same text under the default policy stays at review.
        self.assertEqual(self.predict(FULL_WIDTH)["suggestion"], "review")

    def test_a_capped_block_with_a_contact_is_blocked(self):
        plain = self.predict("代开 13800138000")  # two tokens: a block capped to review
        self.assertEqual((plain["suggestion"], plain["capped"]), ("review", "too_little_text"))
        item = self.predict("代开 13800138000", policy="strict")
        self.assertEqual((item["suggestion"], item["decided_by"]), ("block", "contact_escalation"))
        self.assertNotIn("capped", item)

    def test_get_lists_shows_the_settings(self):
        status, body = self.call("/lists")
        self.assertEqual(body["policies"]["strict"]["contact_escalates"], True)
        self.assertEqual(body["policies"]["ads"]["contacts"], True)
        self.assertNotIn("contacts", body["policies"]["default"])


def test_policy_settings_must_be_booleans():
    policies = parse_policies({"a": {"contacts": True, "contact_escalates": False}}, 0.5, 0.9, 3)
    a = policies["a"]
    assert (a.contacts, a.contact_escalates, a.wants_contacts) == (True, False, True)
    assert not policies["default"].wants_contacts
    for bad in ({"contacts": "yes"}, {"contact_escalates": 1}):
        with pytest.raises(UserError, match="must be true or false"):
            parse_policies({"a": bad}, 0.5, 0.9, 3)
