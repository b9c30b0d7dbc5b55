"""What the service keeps of people's texts (issue 21, docs/operations.md#privacy).

Two places held texts that retention and erasure could not reach:

* the promotion log (``promotion.jsonl``, :mod:`antispam.retrain_record`) copied the texts of
  conflicting feedback into every run's line, was never pruned, and the console served it. Its
  conflict entries now carry :func:`conflict_ref`: a SHA-256 of the normalized text (enough to
  find the row with ``antispam feedback list`` and to see the same text come back night after
  night) and a short :func:`excerpt` with contacts and digits masked. :func:`redact_conflict`
  turns an entry of the old shape into the new one; the console applies it to what it shows and
  ``antispam feedback prune`` rewrites old lines with it (:func:`scrub_log`).
* the feedback store keeps the text a moderator reported; with ``feedback_mask_contacts`` on,
  :func:`mask_contacts` replaces the phone numbers and ids in it before it is stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from pathlib import Path
from typing import Any, Mapping

from antispam.atomic import atomic_write_text
from antispam.contacts import find_contacts

EXCERPT_CHARS = 16
# Personal ways to reach someone; links and domains are the spam's own and stay as they are.
MASKED_KINDS = frozenset({"mobile", "landline", "qq", "wechat", "email"})


def text_digest(normalized: str) -> str:
    """``sha256:<hex>`` of the normalized text (UTF-8): the same for every spelling of a text."""
    return "sha256:" + hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def _mask_char(char: str) -> str:
    if not char.isalnum():
        return char
    return "0" if unicodedata.numeric(char, None) is not None else "x"


def mask_contacts(text: str, kinds: frozenset[str] = MASKED_KINDS) -> str:
    """``text`` with every letter and digit of its phone numbers, QQ numbers, WeChat ids and
    e-mail addresses (:func:`antispam.contacts.find_contacts`) replaced: digits by ``0``, letters
    by ``x``; separators stay. A digit becomes ``x`` once normalized anyway, so for the model a
    masked phone number reads exactly as before; an id with letters reads as a run of ``x``."""
    spans = [(c.start, c.end) for c in find_contacts(text) if c.kind in kinds]
    if not spans:
        return text
    chars = list(text)
    for start, end in spans:
        for i in range(start, end):
            chars[i] = _mask_char(chars[i])
    return "".join(chars)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The first ``limit`` characters of ``text`` with contacts masked (:func:`mask_contacts`,
    links and domains included) and every other digit as ``0``; ``…`` when cut."""
    masked = mask_contacts(text, MASKED_KINDS | {"url", "domain"})
    masked = "".join("0" if unicodedata.numeric(c, None) is not None and c.isdigit() else c for c in masked)
    return masked[:limit] + ("…" if len(masked) > limit else "")


def conflict_ref(normalized: str, text: str) -> dict[str, str]:
    """What the promotion log says of a conflicting text, instead of the text."""
    return {"sha256": text_digest(normalized), "excerpt": excerpt(text)}


def redact_conflict(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A conflict entry without ``text``/``normalized`` (the old shape), with :func:`conflict_ref`
    in their place; entries already redacted come back equal."""
    out = dict(entry)
    text, normalized = out.pop("text", None), out.pop("normalized", None)
    if text is None and normalized is None:
        return out
    if "sha256" not in out:
        from antispam.text import normalize

        norm = normalized if isinstance(normalized, str) else normalize(str(text or ""))
        out.update(conflict_ref(norm, str(text if text is not None else normalized)))
    return out


def redact_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A promotion-log record with its conflict entries redacted."""
    out = dict(record)
    conflicts = out.get("conflicts")
    if isinstance(conflicts, list):
        out["conflicts"] = [redact_conflict(c) if isinstance(c, Mapping) else c for c in conflicts]
    return out


def scrub_log(path: str | os.PathLike[str]) -> int:
    """Rewrite a promotion log with every record redacted (atomically: a reader sees the old file
    or the new one); the number of lines changed. Lines that are not JSON objects stay as they
    are. The caller holds the model folder's retrain lock, so no run appends meanwhile."""
    path = Path(path)
    if not path.is_file():
        return 0
    changed = 0
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            redacted = redact_record(record)
            if redacted != record:
                changed += 1
                line = json.dumps(redacted, ensure_ascii=False, sort_keys=True, default=str)
        lines.append(line)
    if changed:
        atomic_write_text(path, "".join(line + "\n" for line in lines))
    return changed
