"""Evasion robustness: how a model's scores hold up when spam is disguised the way senders do it.

The test-split figures say how well a model separates the corpus' spam from its pass messages as
they are. Senders, though, adapt: they wrap an advert in ordinary chat, space its characters
out, write the phone number in full-width or circled digits, sprinkle emoji, or switch to
traditional characters. :func:`build_variants` rewrites the test split in each of those ways,
:func:`robustness_report` scores every variant with the same function and compares spam recall
with the undisguised spam (and the false-positive rate of long ordinary texts with that of the
ordinary messages), and :func:`format_report` prints the comparison as a table.

Everything is built from the samples given (the test split), so no training message leaks in,
and every random choice comes from the seed, so two runs on the same split score the same texts.
Some variants are undone by :func:`antispam.text.normalize` before the model sees them
(full-width and circled digits fold back under NFKC; traditional characters do too once the
normalizer converts them to simplified ones): their ratio should be exactly 1.0, which checks the
pipeline rather than the model. The others (context, spacing, emoji) change the tokens the model
sees and measure the model itself.

No TensorFlow here: the scorer is any ``texts -> spam probabilities`` function.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from antispam.data import Sample
from antispam.labels import PASS, SPAM

DEFAULT_SEED = 20171128

SPAM_VARIANTS = ("plain_spam", "prepended", "surrounded", "spaced", "fullwidth_digits",
                 "circled_digits", "emoji", "traditional")
PASS_VARIANTS = ("plain_pass", "joined_pass")
VARIANTS = SPAM_VARIANTS + PASS_VARIANTS

# Separators for the spaced variant; normalize() drops every one of them (turns it into a space).
SEPARATORS = (" ", "*", "_", "-", ".", "·", "/", "|", "~", "+")
# A message may also mix them ("加_微-信"): one more choice besides the single separators.
MIXED = "mixed"
EMOJI = ("😀", "🔥", "👍", "🎉", "💰", "✨", "🌟", "😊", "🍀", "🎁")
JOIN = "。"

# In the corpus' spam half every digit is masked as "x"; a run of 3 or more stands where a
# number was (phone numbers are "xxxxxxxxxxx"). Shorter runs are left alone: "x 件" or "xx 岁"
# cannot be told from a real letter x.
_MASKED_NUMBER = re.compile(r"x{3,}")
_CIRCLED = {str(d): chr(0x2460 + d - 1) for d in range(1, 10)} | {"0": "\u24ea"}  # ①..⑨, ⓪


def build_variants(test_samples: Sequence[Sample], seed: int = DEFAULT_SEED) -> dict[str, list[Sample]]:
    """Every evasion variant of ``test_samples``, by name (see :data:`VARIANTS`).

    Built from the given samples only (pass the test split, so no variant contains a message a
    model was trained or selected on) and deterministic for ``seed``: each variant draws from
    its own generator seeded by ``seed`` and its name, so adding a variant never changes the
    others. Duplicate texts are used once. Spam variants keep label SPAM, pass variants PASS.

    * ``plain_spam`` / ``plain_pass``: the spam / pass samples unchanged (the reference).
    * ``prepended``: 1–3 distinct pass messages, then the spam message — ordinary chat in front
      pushes the advert towards the end of a model's fixed-length window or dilutes its words.
    * ``surrounded``: 1–3 distinct pass messages before and 1–3 after the spam message.
      Parts are joined with "。" unless the previous part already ends in punctuation. With a
      single pass message there is none left for after, and the text is only prepended.
    * ``spaced``: the spam message's characters separated by one separator per message from
      :data:`SEPARATORS`, or by a random one per gap ("mixed"), e.g. "加 微 信", "加_微-信".
    * ``fullwidth_digits``: ASCII digits and letters turned into full-width forms (０-９, Ａ-Ｚ).
    * ``circled_digits``: digits 1–9 → ①–⑨, 0 → ⓪.
      For both digit variants, every run of 3 or more "x" (the corpus' mask for digits) is
      first replaced by random digits of the same length; otherwise the spam would contain no
      digits to disguise.
    * ``emoji``: an emoji from :data:`EMOJI` inserted after every 2–3 characters.
    * ``traditional``: the message in traditional characters (OpenCC ``s2t``).
    * ``joined_pass``: pass messages joined in groups of 2–4, each used at most once (a
      leftover single message is dropped) — long ordinary texts, to see whether length alone
      makes a model call something spam.

    Variants needing pass messages are empty when there are none.
    """
    spam = _unique(s.text for s in test_samples if s.label == SPAM)
    passed = _unique(s.text for s in test_samples if s.label == PASS)

    def rng(name: str) -> random.Random:
        # A str seed goes through SHA-512: stable across processes (no hash randomization).
        return random.Random(f"{seed}/{name}")

    spam_texts: dict[str, list[str]] = {
        "plain_spam": list(spam),
        "prepended": _with_context(spam, passed, rng("prepended"), after=False),
        "surrounded": _with_context(spam, passed, rng("surrounded"), after=True),
        "spaced": _spaced(spam, rng("spaced")),
        "fullwidth_digits": _fullwidth(spam, rng("fullwidth_digits")),
        "circled_digits": _circled(spam, rng("circled_digits")),
        "emoji": _emoji(spam, rng("emoji")),
        "traditional": _traditional(spam),
    }
    pass_texts: dict[str, list[str]] = {
        "plain_pass": list(passed),
        "joined_pass": _joined(passed, rng("joined_pass")),
    }
    variants = {name: [Sample(t, SPAM) for t in texts] for name, texts in spam_texts.items()}
    variants.update({name: [Sample(t, PASS) for t in texts] for name, texts in pass_texts.items()})
    return variants


def robustness_report(score: Callable[[list[str]], np.ndarray], test_samples: Sequence[Sample],
                      threshold: float = 0.5, seed: int = DEFAULT_SEED,
                      everyday: Sequence[str] = ()) -> dict[str, Any]:
    """Score every variant once and compare it with the undisguised messages.

    ``score`` maps texts to spam probabilities in [0, 1], one per text; a text counts as
    caught (spam variants) or as a false positive (pass variants) at ``probability >=
    threshold`` — the same rule as the service's review threshold. Returns::

        {"threshold": t, "seed": s,
         "variants": {name: {"label": "spam", "count": n, "recall": r, "recall_ratio": r / r0,
                             "mean_probability": m}            # spam variants
                            | {"label": "pass", "count": n, "false_positive_rate": f,
                               "mean_probability": m}},        # pass variants
         "fpr_increase": joined_pass FPR - plain_pass FPR}

    ``recall_ratio`` is relative to ``plain_spam`` (1.0 = the disguise costs nothing). Figures
    that cannot be computed (an empty variant, a plain recall of 0) are ``None``. ``everyday``
    (the held-out everyday messages, :mod:`antispam.everyday`) adds a pass row of that name.
    """
    variants = build_variants(test_samples, seed)
    if everyday:
        variants["everyday"] = [Sample(text, PASS) for text in everyday]
    rows: dict[str, dict[str, Any]] = {}
    for name, samples in variants.items():
        texts = [s.text for s in samples]
        probs = _scores(score, texts)
        hits = float(np.mean(probs >= threshold)) if len(texts) else None
        mean = float(np.mean(probs)) if len(texts) else None
        if name in SPAM_VARIANTS:
            rows[name] = {"label": "spam", "count": len(texts), "recall": hits, "mean_probability": mean}
        else:
            rows[name] = {"label": "pass", "count": len(texts), "false_positive_rate": hits,
                          "mean_probability": mean}
    base = rows["plain_spam"]["recall"]
    for name in SPAM_VARIANTS:
        recall = rows[name]["recall"]
        rows[name]["recall_ratio"] = recall / base if recall is not None and base else None
    plain_fpr = rows["plain_pass"]["false_positive_rate"]
    joined_fpr = rows["joined_pass"]["false_positive_rate"]
    increase = joined_fpr - plain_fpr if plain_fpr is not None and joined_fpr is not None else None
    return {"threshold": float(threshold), "seed": seed, "variants": rows, "fpr_increase": increase}


def format_report(report: dict[str, Any]) -> str:
    """The report as an aligned table, for a person reading stderr while stdout stays JSON."""
    header = ("variant", "label", "count", "metric", "value", "vs plain")
    lines = [header]
    for name, row in report["variants"].items():
        if row["label"] == "spam":
            metric, value, ratio = "recall", row["recall"], _fmt(row.get("recall_ratio"), "{:.3f}")
        else:
            metric, value = "FPR", row["false_positive_rate"]
            ratio = _fmt(report.get("fpr_increase"), "{:+.4f}") if name == "joined_pass" else "-"
        lines.append((name, row["label"], str(row["count"]), metric, _fmt(value, "{:.4f}"), ratio))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    left = {0, 1, 3}  # text columns left-aligned, numbers right-aligned

    def render(line: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) if i in left else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(line, widths))).rstrip()

    out = [f"robustness at threshold {report['threshold']:.2f} (seed {report.get('seed')})",
           render(header), render(tuple("-" * w for w in widths))]
    out += [render(line) for line in lines[1:]]
    out.append("vs plain: recall / plain_spam recall; for joined_pass, FPR - plain_pass FPR")
    return "\n".join(out)


# --- building blocks --------------------------------------------------------------------------

def _unique(texts: Any) -> list[str]:
    """Texts in first-seen order without repeats, so "never the same message twice" holds by text."""
    return list(dict.fromkeys(texts))


def _join(parts: Sequence[str]) -> str:
    """Concatenate parts, with "。" after any part that does not already end in punctuation."""
    out = ""
    for i, part in enumerate(parts):
        if i and not (out and unicodedata.category(out[-1]).startswith("P")):
            out += JOIN
        out += part
    return out


def _with_context(spam: list[str], passed: list[str], rng: random.Random, after: bool) -> list[str]:
    if not passed:
        return []
    out = []
    for text in spam:
        before_n = rng.randint(1, min(3, len(passed)))
        after_n = rng.randint(1, min(3, len(passed) - before_n)) if after and len(passed) > before_n else 0
        chosen = rng.sample(passed, before_n + after_n)  # distinct within one text
        out.append(_join(chosen[:before_n] + [text] + chosen[before_n:]))
    return out


def _spaced(spam: list[str], rng: random.Random) -> list[str]:
    out = []
    for text in spam:
        style = rng.choice(SEPARATORS + (MIXED,))
        if style == MIXED:
            out.append("".join(ch + (rng.choice(SEPARATORS) if i < len(text) - 1 else "")
                               for i, ch in enumerate(text)))
        else:
            out.append(style.join(text))
    return out


def _unmask_numbers(text: str, rng: random.Random) -> str:
    """Each run of 3+ "x" (a masked number in the corpus) → random digits of the same length."""
    return _MASKED_NUMBER.sub(lambda m: "".join(rng.choice("0123456789") for _ in m.group()), text)


def _fullwidth(spam: list[str], rng: random.Random) -> list[str]:
    def widen(ch: str) -> str:
        return chr(ord(ch) + 0xFEE0) if ch.isascii() and ch.isalnum() else ch

    return ["".join(map(widen, _unmask_numbers(text, rng))) for text in spam]


def _circled(spam: list[str], rng: random.Random) -> list[str]:
    return ["".join(_CIRCLED.get(ch, ch) for ch in _unmask_numbers(text, rng)) for text in spam]


def _emoji(spam: list[str], rng: random.Random) -> list[str]:
    out = []
    for text in spam:
        parts: list[str] = []
        gap = rng.randint(2, 3)
        for i, ch in enumerate(text):
            parts.append(ch)
            gap -= 1
            if gap == 0 and i < len(text) - 1:  # between characters, never at either end
                parts.append(rng.choice(EMOJI))
                gap = rng.randint(2, 3)
        out.append("".join(parts))
    return out


@lru_cache(maxsize=1)
def _s2t() -> Any:
    # Imported here: only this variant needs OpenCC, and importing the module stays cheap.
    import opencc

    return opencc.OpenCC("s2t")


def _traditional(spam: list[str]) -> list[str]:
    if not spam:
        return []
    converter = _s2t()
    return [converter.convert(text) for text in spam]


def _joined(passed: list[str], rng: random.Random) -> list[str]:
    order = list(passed)
    rng.shuffle(order)
    out, i = [], 0
    while len(order) - i >= 2:
        size = min(rng.randint(2, 4), len(order) - i)
        out.append(_join(order[i:i + size]))
        i += size
    return out


def _scores(score: Callable[[list[str]], np.ndarray], texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros(0, dtype=np.float64)
    probs = np.asarray(score(texts), dtype=np.float64).reshape(-1)
    if probs.shape[0] != len(texts):
        raise ValueError(f"the scorer returned {probs.shape[0]} probabilities for {len(texts)} texts")
    return probs


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else spec.format(value)
