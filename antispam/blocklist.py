"""Adding a contact to a block list file (issue 24 item 4: the console's one-click "block this
contact"), so the service's hot reload (:class:`antispam.lists.ListsWatcher`) picks it up.

Why a module of its own: :mod:`antispam.lists` only ever *reads* list files; this is the one
place the service writes one. The contract (docs/contracts.md#console):

* **What is written**: the contact's value in the form :mod:`antispam.contacts` gives it
  (:func:`contact_term`: the digits of a phone or QQ number, a WeChat id, e-mail, domain or URL
  in lower case), checked against its kind, so a request can add a contact and nothing else: no
  ``re:`` pattern, no comment, no line break, nothing shorter than :data:`MIN_KEY_CHARS`
  characters once normalized (a one-character term would block half the traffic).
* **Idempotent**: a term already in the file (the same *key* as the parser computes it,
  :func:`term_key`, so ``138-0013-8000`` and ``13800138000`` are one term) is not added again.
* **Atomic**: the new file is written beside the old and renamed over it
  (:func:`antispam.atomic.atomic_write_text`), so a reader sees the old list or the new one;
  writers (the workers of one service, or two services sharing the folder) take an exclusive
  ``flock`` on a lock file beside it first, so two additions never lose one another.
* A comment line above the term says when it was added and of which kind.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path

from antispam.atomic import atomic_write_text
from antispam.lists import DEFAULT_SET, MAX_FILE_BYTES, compact
from antispam.text import normalize

MIN_KEY_CHARS = 5
MAX_TERM_CHARS = 200
LIST_SET = re.compile(r"[A-Za-z0-9_-]{1,64}")
# What a contact value of each kind looks like once normalized (antispam.contacts' values).
KIND_PATTERNS: dict[str, re.Pattern[str]] = {
    "mobile": re.compile(r"1[3-9][0-9]{9}"),
    "landline": re.compile(r"0[0-9]{9,11}|[48]00[0-9]{7}"),
    "qq": re.compile(r"[1-9][0-9]{4,10}"),
    "wechat": re.compile(r"[a-z][a-z0-9_-]{5,19}"),
    "url": re.compile(r"https?://[^\s#]{4,}"),
    "domain": re.compile(r"(?:[a-z0-9-]+\.)+[a-z]{2,}"),
    "email": re.compile(r"[^\s@#]+@(?:[a-z0-9-]+\.)+[a-z]{2,}"),
}
_DIGITS_ONLY = {"mobile", "landline", "qq"}
_SEPARATORS = re.compile(r"[\s\-.()+]")
_HAS_DIGIT = re.compile(r"\d")


class TermRejected(ValueError):
    """The value cannot be a block term; the message says why (the API's 400)."""


@dataclass(frozen=True)
class Added:
    term: str
    path: Path
    added: bool  # False: the file already had it


def contact_term(kind: str, value: str) -> str:
    """The block term for a contact of ``kind``: its normalized value, checked."""
    if kind not in KIND_PATTERNS:
        raise TermRejected(f"kind must be one of {', '.join(KIND_PATTERNS)}")
    if not isinstance(value, str) or not value.strip():
        raise TermRejected("value must be a non-empty string")
    if len(value) > MAX_TERM_CHARS:
        raise TermRejected(f"value is over {MAX_TERM_CHARS} characters")
    if any(ch in value for ch in "\r\n\x00") or any(ord(ch) < 32 for ch in value):
        raise TermRejected("value must be one line without control characters")
    term = value.strip().lower()
    if kind in _DIGITS_ONLY:
        term = _SEPARATORS.sub("", normalize(term, mask_digits=False).replace(" ", ""))
    if not KIND_PATTERNS[kind].fullmatch(term):
        raise TermRejected(f"value {term[:60]!r} is not a {kind} contact")
    if len(term_key(term)) < MIN_KEY_CHARS:
        raise TermRejected(f"value is shorter than {MIN_KEY_CHARS} characters once normalized")
    return term


def term_key(line: str) -> str:
    """What :func:`antispam.lists.parse_terms` matches a plain term line by: its compact form
    (the digit form for a term with digits)."""
    unmasked = normalize(line.strip(), mask_digits=False)
    return compact(unmasked, digits=bool(_HAS_DIGIT.search(unmasked)))[0]


def block_file(folder: str | os.PathLike[str], list_set: str = DEFAULT_SET) -> Path:
    """``block.txt`` (the default set) or ``<set>.block.txt`` under the lists folder."""
    if not LIST_SET.fullmatch(list_set):
        raise TermRejected("list_set must be 1-64 letters, digits, _ or -")
    return Path(folder) / ("block.txt" if list_set == DEFAULT_SET else f"{list_set}.block.txt")


def listed_keys(text: str) -> set[str]:
    """The keys of the plain terms of a list file's text (comments and ``re:`` lines skipped)."""
    keys = set()
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and not line.startswith("re:"):
            keys.add(term_key(line))
    return keys


def is_listed(folder: str | os.PathLike[str], term: str, list_set: str = DEFAULT_SET) -> bool:
    path = block_file(folder, list_set)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return term_key(term) in listed_keys(text)


def add_term(folder: str | os.PathLike[str], term: str, kind: str, list_set: str = DEFAULT_SET,
             now: _dt.datetime | None = None) -> Added:
    """Append ``term`` (from :func:`contact_term`) to the block list of ``list_set``, unless it
    is there already. Blocking: call it off the event loop."""
    path = block_file(folder, list_set)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise TermRejected(f"{path.name} is over {MAX_FILE_BYTES} bytes; not adding to it")
            old = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            old = ""
        except UnicodeDecodeError:
            raise TermRejected(f"{path.name} is not UTF-8; fix it before adding to it") from None
        if term_key(term) in listed_keys(old):
            return Added(term, path, False)
        stamp = (now or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds")
        if old and not old.endswith("\n"):
            old += "\n"
        atomic_write_text(path, f"{old}# {kind}, added from the console {stamp}\n{term}\n")
        return Added(term, path, True)
    finally:
        os.close(fd)  # releases the lock
