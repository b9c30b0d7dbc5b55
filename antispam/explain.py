"""``explain=true`` (docs/contracts.md#explanations): which spans of the raw text carry the
model's verdict, added to items as ``reasons``.

For each text the tokens are located in the normalized text (jieba's tokens are consecutive
substrings of it), and the normalized offsets map back to the text as sent with
:func:`antispam.text.normalize_with_offsets`. Two kinds of model reasons, computed in **one extra
backend call** per request (all rows of all explained texts together, in calls of at most
256 rows, so the local backend's micro-batcher takes them as few batches), each through
:meth:`antispam.scoring.Scorer.call_backend` (the deadline, answer checks and error metrics
of scoring):

* ``window``: a text of more than 20 tokens is read as 20-token windows, cut the way the version
  serving now reads it (its ``preprocessing.json``: stride and cap; a version that records none
  reads the first 20 tokens only, so that one window); each window is scored as a text of its
  own (one window, so its probability is that row's under every aggregation). The three highest
  are reported.
* ``token`` (occlusion): for a text of 2 to 20 tokens (one window), each token is removed in
  turn and the rest scored; ``delta`` = the text's probability minus the probability without the
  token, ``log_odds_delta`` the same in log-odds (ln p/(1-p)). The five largest positive
  log-odds drops are reported (a saturated score hides them in ``delta``). Longer texts get
  windows only.

List matches are reasons too (``source`` ``block_list``/``allow_list``): the item's ``matches``,
so allow hits only for clients that may see them.
The tokens are the ones the scoring of the same request computed (texts answered from the dedup
cache are segmented here).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from antispam.aio import Slices
from antispam.backends.base import Backend, BatchResult
from antispam.features import Windowing
from antispam.text import normalize_with_offsets

# explain=true adds at most 20 rows per short text and one per window of a long one, so at most
# as many rows again as the text's own scoring; they go to the backend in calls of this many
# rows at most, one after the other, so a full request (100 long texts) never fills the queue.
EXPLAIN_ROWS_PER_CALL = 256
TOP_WINDOWS = 3
TOP_TOKENS = 5
# Used only when the backend cannot say how its current version reads a text.
DEFAULT_WINDOWING = Windowing()


class ModelCaller(Protocol):
    """What explanations need of :class:`antispam.scoring.Scorer`, which calls them: a protocol
    rather than the class, so this module does not import the scorer's module in return (no import cycle)."""

    backend: Backend

    async def segment_all(self, normalized: Sequence[str]) -> list[list[str]]: ...

    async def call_backend(self, token_lists: Sequence[Sequence[str]]) -> tuple[BatchResult, np.ndarray]: ...


def log_odds(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p) - math.log1p(-p)


def token_offsets(normalized: str, tokens: Sequence[str]) -> list[tuple[int, int]]:
    """``[start, end)`` of each token in ``normalized`` (tokens are in order, spaces skipped)."""
    out = []
    at = 0
    for token in tokens:
        start = normalized.find(token, at)
        if start < 0:  # cannot happen with jieba's tokens; keep the answer usable anyway
            start = at
        out.append((start, start + len(token)))
        at = start + len(token)
    return out


def raw_span(spans: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """Normalized ``[start, end)`` → raw ``[start, end)`` through the offset map."""
    return spans[start][0], spans[end - 1][1]


async def add_model_reasons(scorer: ModelCaller, texts: Sequence[str], normalized: Sequence[str],
                            items: list[dict[str, Any]], segmented: Mapping[str, list[str]] | None = None,
                            positions: Sequence[Sequence[int] | None] | None = None) -> None:
    """Add ``reasons`` to ``items``. ``normalized``: the texts the model read (allowed spans
    masked, :mod:`antispam.allow`); ``positions``: for each, the index in the normalized text of
    each of its characters (None: it is the normalized text). ``segmented``: tokens already
    computed for some of them (the scoring's); the others are segmented here."""
    segmented = dict(segmented or {})
    missing = [norm for norm in dict.fromkeys(normalized) if norm not in segmented]
    if missing:
        segmented.update(zip(missing, await scorer.segment_all(missing)))
    token_lists = [segmented[norm] for norm in normalized]
    windowing = scorer.backend.current_windowing or DEFAULT_WINDOWING
    rows: list[list[str]] = []
    plans: list[tuple[str, list[tuple[int, int, int]]]] = []  # kind, (row, a, b) per text
    for tokens in token_lists:
        n = len(tokens)
        if n > windowing.window:
            plan = []
            for a, b in windowing.spans(n):
                plan.append((len(rows), a, b))
                rows.append(tokens[a:b])
            plans.append(("window", plan))
        elif n >= 2:
            plan = []
            for i in range(n):
                plan.append((len(rows), i, i + 1))
                rows.append(tokens[:i] + tokens[i + 1:])
            plans.append(("token", plan))
        else:
            plans.append(("none", []))
    parts: list[np.ndarray] = []
    for at in range(0, len(rows), EXPLAIN_ROWS_PER_CALL):
        # The scorer's guarded call: the same deadline, answer checks and error metrics as scoring.
        _, part = await scorer.call_backend(rows[at:at + EXPLAIN_ROWS_PER_CALL])
        parts.append(part)
    scores = np.concatenate(parts) if parts else np.zeros(0)
    slices = Slices()
    for at_text, (text, norm, tokens, (kind, plan), item) in enumerate(zip(texts, normalized, token_lists,
                                                                           plans, items)):
        await slices.tick()
        _, spans = normalize_with_offsets(text)
        where = token_offsets(norm, tokens)
        mapped = positions[at_text] if positions is not None else None
        if mapped is not None:  # offsets in the masked text -> offsets in the normalized text
            where = [(mapped[a], mapped[b - 1] + 1) for a, b in where]
        reasons: list[dict[str, Any]] = []
        p = float(item["spam_probability"])
        if kind == "window":
            ranked = sorted(plan, key=lambda r: -scores[r[0]])[:TOP_WINDOWS]
            for row, a, b in ranked:
                start, end = raw_span(spans, where[a][0], where[b - 1][1])
                reasons.append({"source": "model", "kind": "window", "start": start, "end": end,
                                "tokens": [a, b], "spam_probability": float(scores[row])})
        elif kind == "token":
            # Ranked by the drop in log-odds: a saturated model (p = 0.9999999) moves its
            # probability by 1e-7 when a decisive token goes, but its log-odds by whole units.
            ranked_tokens = sorted(((log_odds(p) - log_odds(float(scores[row])), p - float(scores[row]), a)
                                    for row, a, _ in plan), key=lambda d: -d[0])
            for drop, delta, a in ranked_tokens[:TOP_TOKENS]:
                if drop <= 0:
                    break
                start, end = raw_span(spans, *where[a])
                reasons.append({"source": "model", "kind": "token", "token": tokens[a],
                                "start": start, "end": end, "delta": delta, "log_odds_delta": drop})
        elif tokens:  # one token: the whole text is the reason
            start, end = raw_span(spans, where[0][0], where[-1][1])
            reasons.append({"source": "model", "kind": "window", "start": start, "end": end,
                            "tokens": [0, len(tokens)], "spam_probability": p})
        for match in item.get("matches", []):
            reasons.append({"source": f"{match['list']}_list", "term": match["term"],
                            "start": match["start"], "end": match["end"]})
        item["reasons"] = reasons
