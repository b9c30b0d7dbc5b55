"""The one rule of campaign evidence (antispam.policies.campaign_decision, issue 24): it never
blocks alone; block needs a contact as well."""

from __future__ import annotations

import itertools

import pytest

from antispam.errors import UserError
from antispam.policies import CAMPAIGN_MODES, campaign_decision, parse_policies

RANK = {"pass": 0, "review": 1, "block": 2}


def test_campaign_evidence_without_a_contact_never_blocks() -> None:
    """A greeting or a delivery notice from many senders, even one the model sends to review."""
    for mode, suggestion in itertools.product(CAMPAIGN_MODES, ("pass", "review")):
        got, _by = campaign_decision(mode, suggestion, "model", contact=False)
        assert got != "block", (mode, suggestion)


def test_block_needs_a_contact() -> None:
    assert campaign_decision("block", "pass", "model", contact=True) == ("block", "campaign")
    assert campaign_decision("block", "review", "model", contact=True) == ("block", "campaign")
    assert campaign_decision("block", "review", "model", contact=False) == ("review", "model")
    assert campaign_decision("block", "pass", "model", contact=False) == ("review", "campaign")


def test_review_and_mark() -> None:
    assert campaign_decision("review", "pass", "model", contact=True) == ("review", "campaign")
    assert campaign_decision("review", "review", "model", contact=True) == ("review", "model")
    for contact in (False, True):
        assert campaign_decision("mark", "pass", "model", contact=contact) == ("pass", "model")


def test_never_lowers_and_lists_stand() -> None:
    for mode, suggestion, contact in itertools.product(CAMPAIGN_MODES, RANK, (False, True)):
        got, by = campaign_decision(mode, suggestion, "model", contact=contact)
        assert RANK[got] >= RANK[suggestion]
        assert (by == "campaign") == (got != suggestion)
        for listed in ("allow_list", "block_list"):
            assert campaign_decision(mode, suggestion, listed, contact=contact) == (suggestion, listed)
    with pytest.raises(ValueError):
        campaign_decision("maybe", "pass", "model", contact=False)


def test_campaign_is_a_checked_policy_setting() -> None:
    policies = parse_policies({"chat": {"campaign": "block"}}, 0.5, 0.9, 2)
    assert policies["chat"].campaign == "block" and policies["default"].campaign == "mark"
    assert policies["chat"].as_dict()["campaign"] == "block" and "campaign" not in policies["default"].as_dict()
    with pytest.raises(UserError, match="campaign"):
        parse_policies({"chat": {"campaign": "ban"}}, 0.5, 0.9, 2)
