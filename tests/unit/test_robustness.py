"""Evasion variants and the robustness report: hand-made samples and fake scorers, no model."""

from __future__ import annotations  # noqa: I001  (see the comment above antispam.data)

import re
import unicodedata

import numpy as np
import pytest

# ruff's isort takes antispam.network for third-party (its source is network/, mapped by
# package_dir in setup.cfg); it is part of this project like the others.
from antispam.data import Sample
from antispam.labels import PASS, SPAM
from antispam.network.robustness import (
    EMOJI,
    PASS_VARIANTS,
    SEPARATORS,
    SPAM_VARIANTS,
    VARIANTS,
    build_variants,
    format_report,
    robustness_report,
)
from antispam.text import normalize

SPAM_TEXTS = [
    "代开发票，联系电话xxxxxxxxxxx",
    "尊敬的客户，您的积分可兑换现金，详询xxxxxxxxxxx",
    "优惠活动开始啦！全场x折，加微信领取",
    "低息贷款当天放款，详情咨询xxxxxxx或QQxxxxxxxxx",
    "新店开业全场五折欢迎光临，地址中山路xxx号",
    "恭喜您中奖了请点击链接领取iPhone",
]
PASS_TEXTS = [
    "妈妈我们明天回家吃晚饭",
    "下午3点开会，记得带电脑",
    "今天天气不错一起去公园吧",
    "我已经到了，你在哪里？",
    "这本书很好看推荐给你",
    "周末一起打篮球吗",
    "晚上吃什么",
]


def samples(spam: list[str] = SPAM_TEXTS, passed: list[str] = PASS_TEXTS) -> list[Sample]:
    return [Sample(t, SPAM) for t in spam] + [Sample(t, PASS) for t in passed]


def decompose(text: str, parts: list[str], used: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every way ``text`` is a join of distinct ``parts`` with optional "。" between them."""
    if not text:
        return [used] if used else []
    found = []
    for part in parts:
        if part in used:
            continue
        for rest in ([text[len(part):]] if text.startswith(part) else []):
            if rest.startswith("。") and rest != "。" and not unicodedata.category(part[-1]).startswith("P"):
                found += decompose(rest[1:], parts, used + (part,))
            elif not rest or unicodedata.category(part[-1]).startswith("P"):
                found += decompose(rest, parts, used + (part,))
    return found


def squeeze(text: str) -> str:
    """Normalized text without its spaces: what a spaced or emoji variant must fold back to."""
    return normalize(text).replace(" ", "")


def test_variants_are_deterministic_for_a_seed() -> None:
    first = build_variants(samples(), seed=7)
    assert first == build_variants(samples(), seed=7)
    assert list(first) == list(VARIANTS)
    other = build_variants(samples(), seed=8)
    assert any(first[name] != other[name] for name in ("prepended", "spaced", "emoji", "joined_pass"))


def test_variant_labels_and_counts() -> None:
    variants = build_variants(samples())
    for name in SPAM_VARIANTS:
        assert all(s.label == SPAM for s in variants[name]), name
        assert len(variants[name]) == len(SPAM_TEXTS), name
    for name in PASS_VARIANTS:
        assert all(s.label == PASS for s in variants[name]), name
    assert [s.text for s in variants["plain_spam"]] == SPAM_TEXTS
    assert [s.text for s in variants["plain_pass"]] == PASS_TEXTS


def test_prepended_is_pass_messages_then_the_spam_message() -> None:
    variants = build_variants(samples())
    for plain, sample in zip(SPAM_TEXTS, variants["prepended"]):
        text = sample.text
        assert text.endswith(plain)
        prefix = text[: -len(plain)]
        prefix = prefix.removesuffix("。")
        ways = decompose(prefix, PASS_TEXTS)
        assert ways, text
        assert any(1 <= len(way) <= 3 for way in ways), text


def test_surrounded_has_pass_messages_on_both_sides() -> None:
    variants = build_variants(samples())
    for plain, sample in zip(SPAM_TEXTS, variants["surrounded"]):
        assert plain in sample.text
        ways = decompose(sample.text, PASS_TEXTS + [plain])
        assert any(plain in way and 0 < way.index(plain) < len(way) - 1
                   and way.index(plain) <= 3 and len(way) - way.index(plain) - 1 <= 3
                   for way in ways), sample.text


def test_joins_add_a_full_stop_only_after_unpunctuated_parts() -> None:
    for sample in build_variants(samples())["joined_pass"] + build_variants(samples())["surrounded"]:
        assert "。。" not in sample.text
        assert "？。" not in sample.text  # "我已经到了，你在哪里？" already ends a sentence
        assert not sample.text.endswith("。")


def test_joined_pass_uses_each_pass_message_at_most_once() -> None:
    for seed in range(5):
        joined = build_variants(samples(), seed=seed)["joined_pass"]
        used: list[str] = []
        for sample in joined:
            ways = decompose(sample.text, PASS_TEXTS)
            assert ways, sample.text
            way = ways[0]
            assert 2 <= len(way) <= 4
            used += way
        assert len(used) == len(set(used))
        assert len(PASS_TEXTS) - len(used) <= 1  # only a single leftover can be dropped


def test_context_variants_with_few_pass_messages() -> None:
    one = build_variants(samples(passed=["晚上吃什么"]))
    assert [s.text for s in one["prepended"]] == [f"晚上吃什么。{t}" for t in SPAM_TEXTS]
    assert one["joined_pass"] == []
    none = build_variants(samples(passed=[]))
    assert none["prepended"] == none["surrounded"] == none["joined_pass"] == none["plain_pass"] == []
    assert len(none["spaced"]) == len(SPAM_TEXTS)


def test_every_separator_is_dropped_by_normalize() -> None:
    # normalize() turns each dropped character into a space, so spacing survives as word breaks
    # (the model sees single characters); without the spaces the text is the plain one again.
    for sep in SEPARATORS:
        assert normalize(f"加{sep}微{sep}信") == "加 微 信", sep
        assert normalize(f"a{sep}b") == "a b", sep


def test_spaced_variant_normalizes_back_to_the_plain_text() -> None:
    many = [f"{t}{i}" for i in range(10) for t in SPAM_TEXTS]
    variants = build_variants(samples(spam=many))
    seen = set()
    for plain, sample in zip(many, variants["spaced"]):
        assert squeeze(sample.text) == squeeze(plain), sample.text
        assert sample.text != plain
        # Only separators were added: taking every other character gives the plain text back.
        assert sample.text[::2] == plain
        seen.add(frozenset(sample.text[1::2]))
    assert len(seen) > 3  # the separator is picked per message


def test_digit_variants_normalize_back_to_the_plain_text() -> None:
    variants = build_variants(samples())
    for plain, wide, circled in zip(SPAM_TEXTS, variants["fullwidth_digits"], variants["circled_digits"]):
        assert normalize(wide.text) == normalize(plain)
        assert normalize(circled.text) == normalize(plain)
        assert not re.search(r"[0-9A-Za-z]", wide.text)  # every ASCII letter and digit widened
        assert not re.search(r"[0-9]", circled.text)
    first = variants["fullwidth_digits"][0].text
    assert "ｘｘｘ" not in first and re.search("[０-９]{11}", first)  # the masked phone number is digits now
    assert re.search("[⓪①-⑨]{11}", variants["circled_digits"][0].text)
    # A single masked digit ("x折") cannot be told from a letter and stays an x.
    assert "ｘ折" in variants["fullwidth_digits"][2].text
    assert "x折" in variants["circled_digits"][2].text


def test_digit_variants_only_fill_in_masked_numbers() -> None:
    variants = build_variants(samples())
    for plain, wide in zip(SPAM_TEXTS, variants["fullwidth_digits"]):
        pattern = "".join(rf"\d{{{len(run)}}}" if run.startswith("xxx") else re.escape(run)
                          for run in re.split(r"(x{3,})", plain))
        narrow = "".join(chr(ord(ch) - 0xFEE0) if "０" <= ch <= "ｚ" and ch.isalnum() else ch for ch in wide.text)
        assert re.fullmatch(pattern, narrow, re.ASCII), wide.text


def test_emoji_variant_inserts_emoji_between_characters() -> None:
    variants = build_variants(samples())
    for plain, sample in zip(SPAM_TEXTS, variants["emoji"]):
        stripped = "".join(ch for ch in sample.text if ch not in EMOJI)
        assert stripped == plain
        inserted = len(sample.text) - len(plain)
        assert len(plain) // 4 <= inserted <= len(plain) // 2
        assert sample.text[0] not in EMOJI and sample.text[-1] not in EMOJI
        assert squeeze(sample.text) == squeeze(plain)


def test_traditional_variant() -> None:
    opencc = pytest.importorskip("opencc")
    variants = build_variants(samples())
    t2s = opencc.OpenCC("t2s")
    for plain, sample in zip(SPAM_TEXTS, variants["traditional"]):
        assert t2s.convert(sample.text) == plain
    invoice = variants["traditional"][0].text
    assert invoice != SPAM_TEXTS[0] and "發票" in invoice


def marker_scorer(marker: str, calls: list[list[str]] | None = None):
    def score(texts: list[str]) -> np.ndarray:
        if calls is not None:
            calls.append(list(texts))
        return np.array([1.0 if marker in t else 0.0 for t in texts])

    return score


def test_report_math_with_a_fake_scorer() -> None:
    # Spam is caught only when "xxxxxxxxxxx" survives as such: 2 of 6 plain spam texts.
    calls: list[list[str]] = []
    report = robustness_report(marker_scorer("xxxxxxxxxxx", calls), samples(), threshold=0.5)
    rows = report["variants"]
    assert report["threshold"] == 0.5
    assert len(calls) == len(VARIANTS)  # one call per variant
    assert rows["plain_spam"] == {"label": "spam", "count": 6, "recall": pytest.approx(2 / 6),
                                  "recall_ratio": pytest.approx(1.0), "mean_probability": pytest.approx(2 / 6)}
    for name in ("prepended", "surrounded", "traditional"):
        assert rows[name]["recall"] == pytest.approx(2 / 6), name
        assert rows[name]["recall_ratio"] == pytest.approx(1.0), name
    for name in ("spaced", "fullwidth_digits", "circled_digits"):
        assert rows[name]["recall"] == 0.0, name
        assert rows[name]["recall_ratio"] == 0.0, name
    assert rows["plain_pass"]["false_positive_rate"] == 0.0
    assert rows["joined_pass"]["false_positive_rate"] == 0.0
    assert report["fpr_increase"] == 0.0


def test_report_false_positives_and_threshold() -> None:
    # Long texts look like spam to this scorer: every joined text and the longest pass ones.
    def by_length(texts: list[str]) -> np.ndarray:
        return np.array([min(len(t) / 20.0, 1.0) for t in texts])

    report = robustness_report(by_length, samples(), threshold=0.5)
    rows = report["variants"]
    plain = sum(len(t) / 20.0 >= 0.5 for t in PASS_TEXTS) / len(PASS_TEXTS)
    assert rows["plain_pass"]["false_positive_rate"] == pytest.approx(plain)
    assert rows["joined_pass"]["false_positive_rate"] == 1.0
    assert report["fpr_increase"] == pytest.approx(1.0 - plain)
    assert rows["plain_spam"]["recall"] == 1.0
    strict = robustness_report(by_length, samples(), threshold=1.0)["variants"]
    assert strict["plain_spam"]["recall"] == pytest.approx(sum(len(t) >= 20 for t in SPAM_TEXTS) / 6)


def test_report_edge_cases() -> None:
    nothing = robustness_report(marker_scorer("never"), samples())
    assert nothing["variants"]["plain_spam"]["recall"] == 0.0
    assert nothing["variants"]["spaced"]["recall_ratio"] is None  # plain recall 0: no ratio
    no_pass = robustness_report(marker_scorer("x"), samples(passed=[]))
    assert no_pass["variants"]["joined_pass"] == {"label": "pass", "count": 0, "false_positive_rate": None,
                                                  "mean_probability": None}
    assert no_pass["variants"]["prepended"]["recall"] is None
    assert no_pass["fpr_increase"] is None
    with pytest.raises(ValueError, match="probabilities for"):
        robustness_report(lambda texts: np.zeros(1), samples())


def test_format_report_is_an_aligned_table() -> None:
    report = robustness_report(marker_scorer("xxxxxxxxxxx"), samples())
    table = format_report(report)
    lines = table.splitlines()
    assert "threshold 0.50" in lines[0]
    assert lines[1].split() == ["variant", "label", "count", "metric", "value", "vs", "plain"]
    for name in VARIANTS:
        assert sum(line.startswith(name + " ") for line in lines) == 1, name
    row = next(line for line in lines if line.startswith("plain_spam "))
    assert row.split() == ["plain_spam", "spam", "6", "recall", "0.3333", "1.000"]
    joined = next(line for line in lines if line.startswith("joined_pass "))
    assert joined.split()[-1] == "+0.0000"
    body = [line for line in lines[1:] if line.split()[0] in VARIANTS or line.startswith("variant")]
    count_end = {line.index(line.split()[2]) + len(line.split()[2]) for line in body}
    assert len(count_end) == 1  # the count column is right-aligned
    empty = format_report(robustness_report(marker_scorer("never"), samples(passed=[])))
    assert "n/a" in empty
