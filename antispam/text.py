"""The one text pipeline: raw text → normalized text → tokens (docs/contracts.md#text-pipeline).

The trainer and the server both call :func:`tokenize`; no other code normalizes or segments
text. Why the rules matter: in the corpus the spam half masks digits as ``x`` and the halves were
segmented differently, so a model fed the lines as they are learns those artifacts instead of
spam. Masking every digit and re-segmenting everything with jieba removes both shortcuts.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import unicodedata
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from antispam.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import jieba
    import opencc

# Bump when normalization or segmentation changes: a model version records the version it was
# trained with, and the service refuses to pair it with a different pipeline.
# 2: traditional characters are folded to simplified ones (OpenCC t2s) before anything else.
NORMALIZER_VERSION = 2
# Versions trained with these normalizers are served with this one. Version 1 differs only in
# leaving traditional characters alone; the corpus it learned from is simplified Chinese, so a
# version-1 model reading the simplified form of a traditional text sees words it knows instead
# of unknown ones. Rollbacks to such versions keep working.
COMPATIBLE_NORMALIZERS = frozenset({1, 2})

_DIGIT = re.compile(r"\d")
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")
# Kept: ASCII letters and digits (digits are already "x" when this runs) and CJK ideographs
# (unified, extension A, compatibility, and the supplementary-plane extensions).
_DROP = re.compile(
    "[^a-z0-9"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002ebef\U00030000-\U0003134f"
    "]+"
)
_LATIN = re.compile(r"[a-z0-9]")


def _ascii_digit(match: re.Match[str]) -> str:
    return str(unicodedata.decimal(match.group()))  # every \d character has a decimal value


def _digits(folded: str, mask_digits: bool) -> str:
    """Step 4: every decimal digit becomes ``x`` (masking), or with ``mask_digits=False`` its
    ASCII digit (``٣`` → ``3``). One character for one, so both forms have the same length and
    the same offsets."""
    if mask_digits:
        return _DIGIT.sub("x", folded)
    # Folded text rarely has a digit other than 0-9 (NFKC made full-width ones ASCII): look first.
    return _DIGIT.sub(_ascii_digit, folded) if _OTHER_DIGIT.search(folded) else folded


_t2s: "opencc.OpenCC | None" = None
_t2s_lock = threading.Lock()


def to_simplified(text: str) -> str:
    """Traditional → simplified characters with OpenCC's ``t2s`` tables (about 1 µs a message).

    Spammers write 發票 and 貸款 to slip past filters trained on 发票 and 贷款. OpenCC (the
    ``opencc`` package, C++ with its dictionaries in the wheel) converts phrase by phrase, so
    one-to-many characters are resolved in context. Loaded on first use, never at import.
    """
    global _t2s
    if _t2s is None:
        with _t2s_lock:
            if _t2s is None:
                import opencc

                _t2s = opencc.OpenCC("t2s")
    return _t2s.convert(text)


def normalize(text: str, *, mask_digits: bool = True) -> str:
    """Fold traditional characters, lower-case, fold width and enclosed forms, mask digits,
    keep only CJK/Latin/digit runs.

    NFKC folds full-width forms to ASCII and circled, bracketed and dotted digits and letters
    (①, ⑴, ⒈, Ⓐ) to their ASCII spelling. Dropped characters become a single space so that
    two Latin words never fuse; the result has no leading or trailing space.

    ``mask_digits=False`` is the same pipeline with step 4 writing each digit as its ASCII digit
    instead of ``x``: term lists match terms that contain digits (a hotline number) on it. The
    model never sees that form. Both forms have the same length, character for character.
    """
    folded = unicodedata.normalize("NFKC", to_simplified(text)).lower()
    return _DROP.sub(" ", _digits(folded, mask_digits)).strip()


def normalize_with_offsets(text: str, *, mask_digits: bool = True) -> tuple[str, list[tuple[int, int]]]:
    """:func:`normalize`'s output and, for each of its characters, the ``[start, end)`` range of
    ``text`` it came from, in code points (Python ``str`` indexes; docs/contracts.md#offsets).

    The string is always exactly ``normalize(text, mask_digits=mask_digits)``; the map is the
    same for both values of ``mask_digits`` (digits are replaced one for one). The map is built step by step: OpenCC is
    aligned as a whole (it converts phrases; t2s keeps the length, so the map is then 1:1),
    NFKC and lower-casing run per base character with its combining marks (``①`` → ``1`` maps
    back to ``①``; ``⑴`` → ``(1)`` maps its three characters to ``⑴``), a kept run maps each
    character, and a space that replaced a dropped run maps to the whole run. If that per-piece
    result ever differs from ``normalize`` (context rules such as Greek final sigma, which are
    dropped anyway), the map falls back to a character alignment of the two strings.
    """
    normalized = normalize(text, mask_digits=mask_digits)
    folded, spans = fold_with_offsets(text, mask_digits=mask_digits)
    out: list[str] = []
    out_spans: list[tuple[int, int]] = []
    for char, span in zip(folded, spans):
        if _DROP.match(char):
            if out and out[-1] == " ":
                out_spans[-1] = (out_spans[-1][0], span[1])
            else:
                out.append(" ")
                out_spans.append(span)
        else:
            out.append(char)
            out_spans.append(span)
    while out and out[0] == " ":
        out.pop(0)
        out_spans.pop(0)
    while out and out[-1] == " ":
        out.pop()
        out_spans.pop()
    if "".join(out) != normalized:
        return normalized, _align(text, normalized)
    return normalized, out_spans


def fold_with_offsets(text: str, *, mask_digits: bool = True) -> tuple[str, list[tuple[int, int]]]:
    """Steps 1-4 of :func:`normalize` (traditional → simplified, NFKC, lower-case, digits), with
    nothing dropped, and for each character the ``[start, end)`` range of ``text`` it came from.

    :func:`normalize_with_offsets` is this followed by step 5 (dropping runs of punctuation,
    emoji and spaces). Contact extraction (:mod:`antispam.contacts`) reads this form because
    the characters step 5 drops (``@ . : / _ -``) are part of e-mail addresses, URLs and
    WeChat ids. NFKC and lower-casing run per base character with its combining marks, so the
    map is exact (``①`` → ``1`` maps back to ``①``; ``⑴`` → ``(1)`` maps all three to ``⑴``).
    """
    simplified = to_simplified(text)
    if len(simplified) == len(text):
        origin = [(i, i + 1) for i in range(len(text))]
    else:
        origin = _align(text, simplified)
    chars = set(simplified)
    if _fold_table_knows(chars) and not chars & _MARKS:
        # Fast path (no combining marks): every character folds alone, by one str.translate.
        folded = simplified.translate(_FOLD)
        if chars & _WIDE:  # some character became several (⑴ → "(1)"): each maps to its origin
            spans = []
            for k, char in enumerate(simplified):
                spans.extend([origin[k]] * len(_FOLD[ord(char)]))
        else:
            spans = origin
        return _digits(folded, mask_digits), spans
    pieces: list[str] = []
    spans = []
    n = len(simplified)
    i = 0
    while i < n:
        j = i + 1
        while j < n and unicodedata.combining(simplified[j]):
            j += 1
        start, end = origin[i][0], origin[j - 1][1]
        folded = unicodedata.normalize("NFKC", simplified[i:j]).lower()
        pieces.append(folded)
        spans.extend([(start, end)] * len(folded))
        i = j
    # Step 4 on the whole string: a digit is replaced one for one, so the spans stay.
    return _digits("".join(pieces), mask_digits), spans


# What each character seen so far folds to alone (NFKC, then lower-case), for str.translate:
# folding character by character through unicodedata cost four times normalize() itself.
# _MARKS: the combining marks among them (a text with one takes the per-piece path, as NFKC
# composes a mark with its base); _WIDE: the ones that fold to other than one character. The
# table only grows, up to _FOLD_LIMIT characters; past that, texts with new ones take the
# per-piece path (same result, slower).
_FOLD: dict[int, str] = {}
_MARKS: set[str] = set()
_WIDE: set[str] = set()
_KNOWN: set[str] = set()
_FOLD_LIMIT = 30000


def _fold_table_knows(chars: set[str]) -> bool:
    """Add ``chars`` to the fold table if there is room; whether all of them are in it."""
    new = chars - _KNOWN
    if not new:
        return True
    if len(_FOLD) + len(new) > _FOLD_LIMIT:
        return False
    for char in new:
        folded = unicodedata.normalize("NFKC", char).lower()
        if unicodedata.combining(char):
            _MARKS.add(char)
        if len(folded) != 1:
            _WIDE.add(char)
        _FOLD[ord(char)] = folded
        _KNOWN.add(char)  # last: a reader that sees it also sees the entries above
    return True


def is_dropped(chars: str) -> bool:
    """Whether step 5 of :func:`normalize` drops every one of ``chars`` (punctuation, emoji,
    spaces, other scripts): the separators the pipeline folds away between digits or words."""
    return bool(chars) and _DROP.fullmatch(chars) is not None


def _align(raw: str, derived: str) -> list[tuple[int, int]]:
    """Map each character of ``derived`` to a ``[start, end)`` range of ``raw`` by a character
    alignment: equal runs map 1:1, a replaced run maps each of its characters to the whole
    replaced range (the fallback of :func:`normalize_with_offsets`)."""
    import difflib

    spans: list[tuple[int, int]] = [(0, len(raw))] * len(derived)
    matcher = difflib.SequenceMatcher(None, raw, derived, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        for k in range(b0, b1):
            spans[k] = (a0 + (k - b0), a0 + (k - b0) + 1) if op == "equal" else (a0, max(a1, a0 + 1))
    return spans


def is_latin(char: str) -> bool:
    return bool(_LATIN.fullmatch(char.lower()))


def rebuild_raw(segmented_line: str) -> str:
    """Join a pre-segmented corpus line back into raw text.

    A space goes only between two Latin/digit tokens (so ``abc 123`` stays two words), none
    between CJK tokens, so jieba re-segments the text exactly as it would a real message.
    """
    out: list[str] = []
    prev = ""
    for token in segmented_line.split():
        if prev and is_latin(prev[-1]) and is_latin(token[0]):
            out.append(" ")
        out.append(token)
        prev = token
    return "".join(out)


# Tokenizer engines (docs/contracts.md#text-pipeline). "auto": rjieba (jieba-rs, Rust) for texts
# whose characters are all in jieba's own range, plain jieba for the rest; "jieba": plain jieba
# only. Both give the same tokens (the reason rjieba may be used at all): checked on every corpus
# message and 20,000 seeded random strings by scripts/tokenizer_compare.py, on a sample by
# tests/unit/test_text.py. Outside the range they differ (jieba emits each CJK extension ideograph
# as a token of its own, jieba-rs joins runs of them), hence the guard.
TOKENIZER_ENGINES = ("auto", "jieba")
TOKENIZER_ENV = "ANTISPAM_TOKENIZER"
# What normalize() can output that jieba-rs segments exactly as jieba does: Latin letters and
# digits, spaces, and the ideographs of jieba's re_han_default (U+4E00-U+9FD5).
_FAST_RANGE = re.compile("[\u4e00-\u9fd5a-z0-9 ]*")


class Segmenter:
    """A jieba tokenizer initialized once, explicitly, from the dictionary inside the package.

    jieba takes about a second and 100 MB to load, so the service never does it at import time;
    callers create one Segmenter at startup (or use :func:`default_segmenter`). The dictionary
    ships in the jieba wheel (and compiled into the rjieba wheel), so no network is involved.

    ``engine`` (default: ``$ANTISPAM_TOKENIZER``, else ``auto``) picks how the tokens are
    computed, never which tokens: ``auto`` uses rjieba, 16x faster than jieba on the corpus
    (5.5 vs 90.7 µs a message), for every text in jieba's character range and plain jieba for any
    other; without the rjieba package it is plain jieba. ``jieba`` is plain jieba throughout.
    """

    def __init__(self, engine: str | None = None) -> None:
        import jieba

        engine = engine if engine is not None else (os.environ.get(TOKENIZER_ENV) or "auto")
        if engine not in TOKENIZER_ENGINES:
            raise UserError(f"{TOKENIZER_ENV}={engine!r}: the tokenizer is one of {', '.join(TOKENIZER_ENGINES)}")
        jieba.setLogLevel(logging.WARNING)
        self._tokenizer: jieba.Tokenizer = jieba.Tokenizer()
        self._tokenizer.initialize()
        self._fast: Any = None
        if engine == "auto":
            try:
                import rjieba
            except ImportError:  # not installed (or no wheel for this platform): plain jieba
                pass
            else:
                self._fast = rjieba.Jieba()
        self.engine = "rjieba+jieba" if self._fast is not None else "jieba"

    def in_one_call(self, normalized: str) -> bool:
        """Whether :meth:`segment` takes this text in one native call (rjieba), too fast to be
        worth slicing for the event loop: about 1 ms for 5,000 characters."""
        return self._fast is not None and _FAST_RANGE.fullmatch(normalized) is not None

    def segment(self, normalized: str) -> list[str]:
        if self.in_one_call(normalized):
            return self.segment_in_one_call(normalized)
        return [t for t in self._tokenizer.lcut(normalized) if not t.isspace()]

    def segment_in_one_call(self, normalized: str) -> list[str]:
        """:meth:`segment` for a text that :meth:`in_one_call` accepted (not checked again)."""
        return [t for t in self._fast.cut(normalized, True) if not t.isspace()]

    def iter_segment(self, normalized: str) -> Iterator[str]:
        """The tokens of :meth:`segment`, one at a time, as jieba produces them.

        Same tokens, same order (jieba's ``lcut`` is ``list(cut(...))``). The service walks this
        iterator in time slices so one long text never holds its event loop for long. jieba
        works block by block (a run of CJK/Latin characters between spaces); the longest stretch
        between two tokens is one block's word graph and HMM pass: under 1 ms for ordinary
        messages, 10-25 ms for an unbroken 5,000-character run (scripts/loop_latency.py). With
        rjieba the whole text is one call: about 1 ms for 5,000 characters.
        """
        if self.in_one_call(normalized):
            return iter(self.segment_in_one_call(normalized))
        return (t for t in self._tokenizer.cut(normalized) if not t.isspace())

    def tokenize(self, text: str) -> list[str]:
        """Raw text → tokens: the function every training and serving path goes through."""
        normalized = normalize(text)
        if not normalized:
            return []
        return self.segment(normalized)

    def tokenize_many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self.tokenize(t) for t in texts]


_default: Segmenter | None = None
_default_lock = threading.Lock()


def default_segmenter() -> Segmenter:
    """The process-wide segmenter, created on first use (never at import)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Segmenter()
    return _default


def tokenize(text: str) -> list[str]:
    """Raw text → tokens with the process-wide segmenter."""
    return default_segmenter().tokenize(text)
