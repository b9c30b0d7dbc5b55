"""Bench variants (lists loaded, explain=true): parsing, labels, requests, generated lists."""

from __future__ import annotations

import json
import re

import pytest

from antispam.bench import variants
from antispam.bench.load import build_requests
from antispam.bench.scenarios import Load, plan, with_variants
from antispam.cli import build_parser
from antispam.commands.bench import settings_from
from antispam.errors import UserError
from antispam.lists import read_list_file

pytestmark = pytest.mark.unit

# (Not "代开发票，优惠贷款": the generated term 代开发票优惠 is in it, as in a real list.)
ORDINARY = ["优惠贷款，加微信13800138000", "妈妈，我们明天回家吃晚饭", "今天开会", "ok 123",
            "您好，您的快递已到小区门口，请及时领取", "本店新品上市，全场八折，详询门店"]


@pytest.mark.parametrize("text, expected", [
    ("plain", ("plain",)),
    ("plain,lists,explain", ("plain", "lists", "explain")),
    ("explain+lists, plain", ("lists+explain", "plain")),
    ("lists,lists+explain,explain+lists", ("lists", "lists+explain")),
])
def test_parse_variants(text: str, expected: tuple[str, ...]) -> None:
    assert variants.parse_variants(text) == expected


@pytest.mark.parametrize("text", ["", " , ", "fast", "plain+lists", "lists+lists", "lists+"])
def test_bad_variants_are_user_errors(text: str) -> None:
    with pytest.raises(UserError):
        variants.parse_variants(text)


def test_loads_get_one_row_per_variant_side_by_side() -> None:
    loads = with_variants(plan(("get", "post10"), (250.0,)), ("plain", "lists", "explain"))
    assert [load.label for load in loads] == [
        "GET 1 @250/s", "GET 1 @250/s +lists", "GET 1 @250/s +explain",
        "GET 1 max", "GET 1 max +lists", "GET 1 max +explain",
        "POST 10 max", "POST 10 max +lists", "POST 10 max +explain"]
    assert Load("post10long", "saturation", variant="lists+explain").label == "POST 10 1000-char max +lists+explain"
    assert [variants.uses_lists(v) for v in ("plain", "lists", "explain", "lists+explain")] == [
        False, True, False, True]
    assert [variants.uses_explain(v) for v in ("plain", "lists", "explain", "lists+explain")] == [
        False, False, True, True]


def test_settings() -> None:
    parse = build_parser().parse_args
    assert settings_from(parse(["bench"]))["variants"] == ["plain"]
    settings = settings_from(parse(["bench", "--variants", "plain,lists,explain", "--lists-terms", "500"]))
    assert settings["variants"] == ["plain", "lists", "explain"] and settings["lists_terms"] == 500
    with pytest.raises(UserError, match="--url"):
        settings_from(parse(["bench", "--url", "http://127.0.0.1:8000", "--variants", "plain,lists"]))
    assert settings_from(parse(["bench", "--url", "http://127.0.0.1:8000", "--variants", "explain"]))["variants"] == [
        "explain"]
    with pytest.raises(UserError, match="unknown bench variant"):
        settings_from(parse(["bench", "--variants", "plain,slow"]))


def test_explain_requests_ask_for_explanations() -> None:
    (get, _), = build_requests("127.0.0.1", 8000, ["你好"], "get", 1, explain=True)
    assert get.startswith(b"GET /predict?text=%E4%BD%A0%E5%A5%BD&explain=true HTTP/1.1\r\n")
    (post, count), = build_requests("127.0.0.1", 8000, ["你好", "再见"], "post", 2, explain=True)
    assert count == 2 and json.loads(post.split(b"\r\n\r\n", 1)[1]) == {"texts": ["你好", "再见"], "explain": True}
    (plain, _), = build_requests("127.0.0.1", 8000, ["你好", "再见"], "post", 2)
    assert b"explain" not in plain


def test_generated_terms_are_deterministic_distinct_chinese() -> None:
    terms = variants.block_terms(10_000)
    assert len(terms) == len(set(terms)) == 10_000
    assert terms == variants.block_terms(10_000) and terms != variants.block_terms(10_000, seed=1)
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{5,14}", t) for t in terms)
    assert len(variants.block_terms(20_000)) == 20_000  # past the three-part phrases: linked ones
    with pytest.raises(ValueError):
        variants.block_terms(10**6)
    allow = variants.allow_terms()
    assert len(allow) == variants.DEFAULT_ALLOW_TERMS + variants.DEFAULT_DIGIT_ALLOW_TERMS
    assert sum(bool(re.fullmatch(r"400-\d{3}-\d{4}", t)) for t in allow) == variants.DEFAULT_DIGIT_ALLOW_TERMS


def test_written_lists_parse_and_seldom_decide(tmp_path) -> None:
    info = variants.write_lists(tmp_path / "lists", 10_000)
    assert info["block_terms"] == 10_000 and info["block_patterns"] == len(variants.PATTERNS)
    assert info["allow_terms"] == 200 and info["allow_terms_with_digits"] == 20
    block = read_list_file(tmp_path / "lists" / "block.txt")
    allow = read_list_file(tmp_path / "lists" / "allow.txt")
    assert (len(block.terms), len(block.patterns)) == (10_000, 5)
    assert (len(allow.terms), len(allow.digit_terms)) == (200, 20)
    before = (tmp_path / "lists" / "block.txt").read_bytes()
    variants.write_lists(tmp_path / "again", 10_000)
    assert (tmp_path / "again" / "block.txt").read_bytes() == before  # deterministic files
    # Ordinary texts, spam included, are left to the model...
    assert variants.hit_rate(tmp_path / "lists", ORDINARY)["share"] == 0.0
    # ... and a text holding a term or a listed hotline is decided by the lists.
    hotline = variants.allow_terms()[-1]
    texts = [f"今天{variants.block_terms(1)[0]}哦", f"客服电话{hotline.replace('-', ' ')}，代开发票", "你好"]
    hits = variants.hit_rate(tmp_path / "lists", texts)
    assert (hits["block_decided"], hits["allow_decided"], hits["texts"]) == (1, 1, 3)


def test_the_decisions_variant() -> None:
    """Issue 23: ``decisions`` is a variant of its own and combines with the others."""
    assert variants.parse_variants("plain,decisions,decisions+explain") == ("plain", "decisions", "explain+decisions")
    assert [variants.uses_decisions(v) for v in ("plain", "decisions", "lists+decisions", "explain")] == [
        False, True, True, False]
    assert variants.label_suffix("decisions") == " +decisions"
    metrics = ("# TYPE antispam_decisions_written_total counter\nantispam_decisions_written_total 120.0\n"
               'antispam_decisions_dropped_total{reason="queue_full"} 3.0\n'
               'antispam_decisions_dropped_total{reason="store_error"} 4.0\n')
    assert variants.decision_counters(metrics) == {"written": 120.0, "dropped": 7.0}
    assert variants.decision_counters("antispam_requests_total 5.0\n") == {"written": 0.0, "dropped": 0.0}
    parse = build_parser().parse_args
    with pytest.raises(UserError, match="--url"):
        settings_from(parse(["bench", "--url", "http://127.0.0.1:8000", "--variants", "decisions"]))
    settings = settings_from(parse(["bench", "--variants", "plain,decisions", "--decision-db", "x.db"]))
    assert settings["decision_db"] == "x.db"
