"""What an allow term exempts (docs/contracts.md#term-lists, issue 21): the spans it covers, not
the text around them.

Until issue 21 any allow hit decided the whole text: ``pass``, before the block terms and the
model. So appending the company's allowed hotline to any advert made it pass, and the answer's
``matches`` told the sender which phrase had worked. Now, by default (a policy's
``allow_mode`` ``"spans"``):

* block hits that overlap an allow hit are cancelled (the allow term was written for them);
* the model is asked about the normalized text **with the allowed spans masked**: each maximal
  run of allowed characters is cut out and replaced by one space;
* only when the allowed spans cover every character of the text is there nothing left to judge:
  then it passes, ``decided_by`` ``allow_list``.

Why masking the normalized text before segmentation, and not dropping the model's windows that
hold only allowed tokens: masking works the same for every backend and model version (windows
are cut inside the exported model or the backend, by each version's own stride and cap), it
removes the allowed phrase from *every* window rather than only from windows that hold nothing
else (a window holding the allowed phrase and an advert would still count the phrase), and the
masked text is an ordinary normalized text (one space between runs, as normalization makes) that
jieba segments like any other: the space is a block boundary, so no word is fused across the
gap. The cost: the model reads the words on either side of the gap as neighbours. The masked text
is what the model scores, so it is what the dedup cache (:mod:`antispam.cache`) keys on.

A policy may opt into the old behaviour with ``"allow_mode": "whole_text"`` (any allow hit
passes the whole text, the model reads it unmasked): for a list set whose allow terms are trusted
senders' signatures, never for terms a sender can simply copy into a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from antispam.lists import Match

SPANS = "spans"
WHOLE_TEXT = "whole_text"
ALLOW_MODES = (SPANS, WHOLE_TEXT)


@dataclass(frozen=True)
class ListOutcome:
    """The list hits of one text under a policy, and what the model is asked about."""

    allow: tuple[Match, ...]  # every allow hit
    block: tuple[Match, ...]  # the block hits still standing (spans mode: not overlapping an allow hit)
    scored: str  # the normalized text the model scores (the dedup cache key)
    positions: tuple[int, ...] | None  # per character of ``scored``, its index in the normalized text; None: the same
    exempt: bool  # the allow list decides: every character allowed (spans) or any allow hit (whole_text)


def no_lists(normalized: str) -> ListOutcome:
    """The outcome of a text no list matched: the model reads it as it is."""
    return ListOutcome((), (), normalized, None, False)


def mask(normalized: str, spans: Sequence[tuple[int, int]]) -> tuple[str, tuple[int, ...]]:
    """``normalized`` without the characters of ``spans`` (``[start, end)``), each maximal run
    of removed characters (with the spaces around it) replaced by one space, no leading or
    trailing space; and for each character of the result its index in ``normalized`` (a space
    that replaced a run: the run's first index)."""
    covered = bytearray(len(normalized))
    for start, end in spans:
        covered[start:end] = b"\x01" * (end - start)
    chars: list[str] = []
    index: list[int] = []
    gap_at: int | None = None
    for i, char in enumerate(normalized):
        if covered[i] or char == " ":
            if gap_at is None:
                gap_at = i
            continue
        if gap_at is not None and chars:
            chars.append(" ")
            index.append(gap_at)
        gap_at = None
        chars.append(char)
        index.append(i)
    return "".join(chars), tuple(index)


def _overlaps(match: Match, spans: Sequence[tuple[int, int]]) -> bool:
    return any(match.start < end and start < match.end for start, end in spans)


def apply_lists(normalized: str, found: Sequence[Match], mode: str = SPANS) -> ListOutcome:
    """Split ``found`` (one text's hits, :meth:`antispam.lists.Snapshot.find`) into allow and
    block hits and decide what the model reads, by the policy's ``allow_mode``."""
    allow = tuple(m for m in found if m.kind == "allow")
    block = tuple(m for m in found if m.kind == "block")
    if not allow:
        return ListOutcome((), block, normalized, None, False)
    if mode == WHOLE_TEXT:
        return ListOutcome(allow, block, normalized, None, True)
    spans = [(m.start, m.end) for m in allow]
    standing = tuple(m for m in block if not _overlaps(m, spans))
    masked, positions = mask(normalized, spans)
    if not masked:  # every character is allowed: nothing is left to judge
        return ListOutcome(allow, standing, normalized, None, True)
    return ListOutcome(allow, standing, masked, positions, False)
