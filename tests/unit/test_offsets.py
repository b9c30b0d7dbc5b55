"""normalize_with_offsets (docs/contracts.md#offsets): the same string as normalize, and each
normalized character mapped to the code points of the raw text it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from antispam.text import normalize, normalize_with_offsets

pytestmark = pytest.mark.unit

TRICKY = [
    "加Ｖ信１３８００１３８０００",            # full-width letters and digits
    "①②③加微信⑴⒈Ⓐ",                        # circled, parenthesized, dotted, circled letter
    "😀加微信😀代开发票",                     # emoji outside the BMP (a surrogate pair in UTF-16)
    "𠀀𠀁加微信",                            # CJK extension B: one code point each
    "👨‍👩‍👧 家庭聚会 👍🏽",                    # ZWJ sequence, skin-tone modifier
    "cafe\u0301 代开發票",                    # combining accent, traditional characters
    "ﬁnance ｶﾞ ㍿ 加 微 信",                  # ligature (1 → 2), half-width kana (2 → 1), square
    "ΑΣ 加微信 İstanbul",                     # Greek final sigma, dotted I (lower-cases to 2)
    "\u200b加\u200d微\ufeff信\u3000",          # zero-width and ideographic space
    "",
    "!!!",
]


def everyday() -> list[str]:
    path = Path(__file__).resolve().parents[2] / "antispam" / "corpora" / "everyday_zh.tsv"
    return [line.split("\t", 1)[1] for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]


def check(text: str) -> None:
    norm, spans = normalize_with_offsets(text)
    assert norm == normalize(text)
    assert len(spans) == len(norm)
    for char, (start, end) in zip(norm, spans):
        assert 0 <= start < end <= len(text), (text, char, start, end)
        if char != " ":
            # the raw piece, normalized on its own, gives this character
            assert char in normalize(text[start:end]), (text, char, text[start:end])
    starts = [s for s, _ in spans]
    assert starts == sorted(starts)


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_texts(text: str) -> None:
    check(text)


def test_everyday_corpus_is_identical_and_mapped() -> None:
    texts = everyday()
    assert len(texts) > 50
    for text in texts:
        check(text)


def spans_of(text: str) -> list[str]:
    norm, spans = normalize_with_offsets(text)
    return [text[a:b] for a, b in spans]


def test_exact_maps() -> None:
    assert spans_of("加Ｖ信１３８") == ["加", "Ｖ", "信", "１", "３", "８"]
    assert normalize_with_offsets("😀加微信😀") == ("加微信", [(1, 2), (2, 3), (3, 4)])
    assert normalize_with_offsets("𠀀加") == ("𠀀加", [(0, 1), (1, 2)])
    # ⑴ becomes "(1)": "(" and ")" are dropped, the "x" maps to the whole ⑴
    norm, spans = normalize_with_offsets("代开⑴号")
    assert norm == "代开 x 号" and [spans[3]] == [(2, 3)]
    # a ligature gives two characters from one code point; half-width ｶﾞ composes
    assert spans_of("ﬁ") == ["ﬁ", "ﬁ"]
    # a space replacing a run of dropped characters maps to the whole run
    norm, spans = normalize_with_offsets("加，，😀微")
    assert norm == "加 微" and spans[1] == (1, 4)
    # traditional → simplified keeps one code point per character
    assert normalize_with_offsets("發票") == ("发票", [(0, 1), (1, 2)])


def test_real_corpus_and_its_traditional_form_map_piece_by_piece(real_corpus, monkeypatch) -> None:
    """On every corpus message and its traditional-character form, the per-piece map is built
    (the alignment fallback never runs) and the string is normalize's."""
    import opencc

    from antispam import text
    from antispam.data import read_corpus

    fallbacks = []
    original = text._align
    monkeypatch.setattr(text, "_align", lambda raw, derived: fallbacks.append(raw) or original(raw, derived))
    raw = [text.rebuild_raw(s.text) for s in read_corpus(real_corpus)]
    s2t = opencc.OpenCC("s2t")
    for message in raw + [s2t.convert(r) for r in raw[:3000]]:
        norm, spans = normalize_with_offsets(message)
        assert norm == normalize(message) and len(spans) == len(norm)
    assert fallbacks == []
