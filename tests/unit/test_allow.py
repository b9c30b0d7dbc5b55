"""What an allow term exempts (antispam/allow.py, docs/contracts.md#term-lists, issue 21)."""

from __future__ import annotations

import pytest

from antispam.allow import SPANS, WHOLE_TEXT, apply_lists, mask
from antispam.errors import UserError
from antispam.lists import ListSet, Snapshot, parse_terms
from antispam.policies import parse_policies
from antispam.text import normalize

pytestmark = pytest.mark.unit


def test_mask_cuts_runs_out_and_keeps_one_space() -> None:
    norm = "客服热线 xxx xxx xxxx 办理贷款"
    masked, index = mask(norm, [(5, 8), (9, 12), (13, 17)])  # the hotline's three digit runs
    assert masked == "客服热线 办理贷款"
    assert [norm[i] for i in index] == ["客", "服", "热", "线", " ", "办", "理", "贷", "款"]
    assert index[4] == 4  # the space stands for the run that starts at the space before it
    assert mask(norm, [(0, 4)]) == ("xxx xxx xxxx 办理贷款", tuple(range(5, len(norm))))
    assert mask(norm, [(0, len(norm))]) == ("", ())
    assert mask("ab cd", []) == ("ab cd", (0, 1, 2, 3, 4))


def lists(block: list[str], allow: list[str]) -> Snapshot:
    return Snapshot({"default": ListSet(block=parse_terms(block), allow=parse_terms(allow))})


def outcome(text: str, mode: str = SPANS, block: tuple[str, ...] = ("加微信",),
            allow: tuple[str, ...] = ("400-812-3456", "加微信公众号")):
    norm = normalize(text)
    return apply_lists(norm, lists(list(block), list(allow)).find(norm, ["default"], text), mode)


def test_the_issue_reproduction_is_scored_without_the_hotline() -> None:
    result = outcome("客服热线：400-812-3456，办理贷款加微信")
    assert (result.scored, result.exempt) == ("客服热线 办理贷款加微信", False)
    assert [m.term for m in result.block] == ["加微信"]  # outside the allowed span: it stands
    assert [m.term for m in result.allow] == ["400-812-3456"]


def test_block_hits_overlapping_an_allowed_span_are_cancelled() -> None:
    result = outcome("欢迎加微信公众号")
    assert (result.scored, result.block, result.exempt) == ("欢迎", (), False)
    result = outcome("加微信公众号加微信")
    assert [(m.start, m.end) for m in result.block] == [(6, 9)]


def test_only_a_fully_allowed_text_is_exempt() -> None:
    result = outcome("400 812 3456！")
    assert (result.exempt, result.scored, result.positions) == (True, "xxx xxx xxxx", None)
    assert not outcome("400 812 3456 你好").exempt


def test_whole_text_mode_is_the_old_behaviour() -> None:
    result = outcome("客服热线：400-812-3456，办理贷款加微信", WHOLE_TEXT)
    assert (result.exempt, result.scored) == (True, normalize("客服热线：400-812-3456，办理贷款加微信"))


def test_no_allow_hit_changes_nothing() -> None:
    result = outcome("办理贷款加微信")
    assert (result.scored, result.positions, result.exempt, len(result.block)) == ("办理贷款加微信", None, False, 1)


def test_allow_mode_is_a_checked_policy_setting() -> None:
    policies = parse_policies({"legacy": {"allow_mode": "whole_text"}, "comments": {}}, 0.5, 0.9, 3)
    assert (policies["legacy"].allow_mode, policies["comments"].allow_mode, policies["default"].allow_mode) == \
        ("whole_text", "spans", "spans")
    with pytest.raises(UserError, match="allow_mode must be one of 'spans', 'whole_text'"):
        parse_policies({"x": {"allow_mode": "always"}}, 0.5, 0.9, 3)
