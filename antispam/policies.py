"""Named policies (docs/contracts.md#policies): per use case, the thresholds and the term lists.

A request picks one with ``policy=`` (query or body); without it, ``default``. The policies file
(``ANTISPAM_POLICIES_FILE``) is JSON::

    {
      "default":  {"review_threshold": 0.5, "block_threshold": 0.9},
      "comments": {"review_threshold": 0.6, "block_threshold": 0.95, "lists": ["default", "comments"]},
      "usernames": {"block_threshold": 0.8, "min_tokens_to_block": 0},
      "ads":      {"contacts": true, "contact_escalates": true},
      "chat":     {"campaign": "block"}
    }

Every field is optional: thresholds and ``min_tokens_to_block`` default to the service's
settings; a threshold left unset there too follows the serving version's operating points
(:mod:`antispam.operating_points`), while a policy that sets one keeps it for every version.
``lists`` defaults to ``["default", <name>]`` (the shared lists and the policy's own, see
:mod:`antispam.lists`), ``allow_mode`` to ``"spans"`` (an allow term exempts the spans it covers;
``"whole_text"`` is the pre-issue-21 "any allow hit passes the text", see :mod:`antispam.allow`),
``contacts`` and ``contact_escalates`` to false (issue 24: every item carries its contacts; a
model ``review`` of a text with a contact becomes ``block``, see docs/contracts.md#contacts),
``campaign`` to ``"mark"`` (issue 24: what campaign evidence does, :func:`campaign_decision`).
Without a file, or when the file has no ``default``, ``default`` is the service's thresholds
with the ``default`` lists. The file is read at start (a bad file stops the start with a message
naming it) and again when it changes (:class:`PoliciesWatcher`, polled with the term lists): a
file that is invalid or gone then keeps the previous policies serving, with the error in
``GET /lists`` and the log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antispam.allow import ALLOW_MODES, SPANS
from antispam.errors import UserError
from antispam.lists import DEFAULT_SET
from antispam.operating_points import OperatingPoints, check_thresholds, resolve_thresholds

log = logging.getLogger(__name__)

DEFAULT_POLICY = "default"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FIELDS = {"review_threshold", "block_threshold", "min_tokens_to_block", "lists", "allow_mode", "contacts",
           "contact_escalates", "campaign"}
# What a policy does with campaign evidence (docs/contracts.md#campaigns): only the item's field,
# ``review`` a text that would pass, or ``block`` (which :func:`campaign_decision` limits).
CAMPAIGN_MODES = ("mark", "review", "block")
_RANK = {"pass": 0, "review": 1, "block": 2}


@dataclass(frozen=True)
class Policy:
    name: str
    review_threshold: float | None  # None: the serving version's review operating point
    block_threshold: float | None  # None: the serving version's block operating point
    min_tokens_to_block: int
    lists: tuple[str, ...]
    allow_mode: str = SPANS  # antispam.allow: "spans" (default) or "whole_text" (opt-in, issue 21)
    contacts: bool = False  # every item carries ``contacts``, as with the request's contacts=true
    contact_escalates: bool = False  # a model "review" of a text with a contact becomes "block"
    campaign: str = "mark"  # issue 24: CAMPAIGN_MODES, see campaign_decision

    @property
    def wants_contacts(self) -> bool:
        """Whether texts scored under this policy are searched for contacts at all."""
        return self.contacts or self.contact_escalates

    def thresholds(self, points: OperatingPoints | None) -> tuple[float, float]:
        """(review, block) for a text scored by a version with ``points``."""
        return resolve_thresholds(self.review_threshold, self.block_threshold, points)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"review_threshold": self.review_threshold, "block_threshold": self.block_threshold,
                               "thresholds_from": (
                                   "version" if self.review_threshold is None and self.block_threshold is None
                                   else "policy" if self.review_threshold is not None
                                   and self.block_threshold is not None else "policy and version"),
                               "min_tokens_to_block": self.min_tokens_to_block, "lists": list(self.lists),
                               "allow_mode": self.allow_mode}
        for name in ("contacts", "contact_escalates"):  # shown when set: older answers stay as they were
            if getattr(self, name):
                out[name] = True
        if self.campaign != "mark":
            out["campaign"] = self.campaign
        return out


def campaign_decision(mode: str, suggestion: str, decided_by: str, *, contact: bool) -> tuple[str, str]:
    """The suggestion and ``decided_by`` of a text with campaign evidence, under policy ``mode``.

    The one rule (issue 24; docs/contracts.md#campaigns): **campaign evidence alone never
    blocks.** Many senders sending near-identical texts is also what a holiday greeting or a
    delivery notice looks like, so the count can raise a text at most to ``review``; ``block``
    needs a way to reach the sender in the text as well (``contact``: a contact outside the
    allowed spans, so the operator's own hotline does not count). The model's score does not
    stand in for the contact: the model sends ordinary templates to review often enough (in the
    replay, 64 of 300 parcel notices that the model sent to review would have been blocked), and
    a model ``block`` needs no campaign anyway.

    * ``mark``: nothing changes (the item only carries ``campaign``).
    * ``review``: a ``pass`` becomes ``review``.
    * ``block``: ``block`` with a contact, else ``review``.
    * A term-list decision (``allow_list``, ``block_list``) stands; a suggestion is never lowered.
    ``decided_by`` becomes ``campaign`` when the suggestion changed.
    """
    if mode not in CAMPAIGN_MODES:
        raise ValueError(f"campaign mode must be one of {CAMPAIGN_MODES}, got {mode!r}")
    if mode == "mark" or decided_by in ("allow_list", "block_list"):
        return suggestion, decided_by
    target = "block" if mode == "block" and contact else "review"
    if _RANK[target] > _RANK[suggestion]:
        return target, "campaign"
    return suggestion, decided_by


def default_policy(review: float | None, block: float | None, min_tokens: int) -> Policy:
    return Policy(DEFAULT_POLICY, review, block, min_tokens, (DEFAULT_SET,))


def parse_policies(data: Any, review: float | None, block: float | None, min_tokens: int,
                   source: str = "policies") -> dict[str, Policy]:
    if not isinstance(data, dict):
        raise UserError(f"{source}: must be a JSON object of policy name -> settings")
    out: dict[str, Policy] = {}
    for name, spec in data.items():
        where = f"{source}: policy {name!r}"
        if not _NAME.fullmatch(name):
            raise UserError(f"{where}: names are 1-64 letters, digits, _ or -")
        if not isinstance(spec, dict):
            raise UserError(f"{where}: must be an object")
        unknown = set(spec) - _FIELDS
        if unknown:
            raise UserError(f"{where}: unknown fields {sorted(unknown)}; known: {sorted(_FIELDS)}")
        r, b = spec.get("review_threshold", review), spec.get("block_threshold", block)
        m = spec.get("min_tokens_to_block", min_tokens)
        problem = check_thresholds(r, b)
        if problem:
            raise UserError(f"{where}: {problem}")
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise UserError(f"{where}: min_tokens_to_block must be an integer >= 0")
        default_lists = [DEFAULT_SET] if name == DEFAULT_POLICY else [DEFAULT_SET, name]
        lists = spec.get("lists", default_lists)
        if not isinstance(lists, list) or not all(isinstance(x, str) and _NAME.fullmatch(x) for x in lists):
            raise UserError(f"{where}: lists must be a list of list-set names")
        allow_mode = spec.get("allow_mode", SPANS)
        if allow_mode not in ALLOW_MODES:
            raise UserError(f"{where}: allow_mode must be one of {', '.join(map(repr, ALLOW_MODES))}")
        flags = {}
        for flag in ("contacts", "contact_escalates"):
            value = spec.get(flag, False)
            if not isinstance(value, bool):
                raise UserError(f"{where}: {flag} must be true or false")
            flags[flag] = value
        campaign = spec.get("campaign", "mark")
        if campaign not in CAMPAIGN_MODES:
            raise UserError(f"{where}: campaign must be one of {', '.join(map(repr, CAMPAIGN_MODES))}")
        out[name] = Policy(name, None if r is None else float(r), None if b is None else float(b), int(m),
                           tuple(lists), allow_mode, **flags, campaign=campaign)
    if DEFAULT_POLICY not in out:
        out[DEFAULT_POLICY] = default_policy(review, block, min_tokens)
    return out


def load_policies(path: str | None, review: float | None, block: float | None,
                  min_tokens: int) -> dict[str, Policy]:
    """The policies of ``path`` (JSON), or only ``default`` when ``path`` is unset."""
    if not path:
        return {DEFAULT_POLICY: default_policy(review, block, min_tokens)}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"policies file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserError(f"policies file {path}: not valid JSON: {exc}") from None
    return parse_policies(data, review, block, min_tokens, f"policies file {path}")


class PoliciesWatcher:
    """The policies serving now (:attr:`current`), reloaded when the file changes.

    Each poll compares the file's (mtime, size, inode); a changed file is read and parsed (a small
    JSON file: on the calling thread) and the new policies replace the old in one assignment. A
    file that fails, or is gone, keeps the previous policies serving; :attr:`error` says why
    until a good file is read. Without a file (``path`` unset) the policies never change.
    """

    def __init__(self, path: str | None, review: float | None, block: float | None, min_tokens: int, *,
                 poll_seconds: float = 2.0, policies: dict[str, Policy] | None = None) -> None:
        self.path = path if policies is None else None
        self.thresholds = (review, block, min_tokens)
        self.poll_seconds = poll_seconds
        self._signature = self._stat()  # before reading: a change in between is seen next poll
        # A bad file at start is the caller's error (antispam serve refuses to start).
        self.current: dict[str, Policy] = policies if policies is not None else load_policies(path, *self.thresholds)
        self.loaded_at = time.time()
        self.error: str | None = None
        self.reloads = 0
        self._last_poll = time.monotonic()

    def _stat(self) -> tuple[int, int, int] | None:
        if not self.path:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def maybe_refresh(self, now: float | None = None) -> dict[str, Policy]:
        now = time.monotonic() if now is None else now
        if now - self._last_poll >= self.poll_seconds:
            self._last_poll = now
            self.refresh()
        return self.current

    def refresh(self) -> bool:
        """Re-read the file if it changed; True if new policies were swapped in."""
        if not self.path:
            return False
        signature = self._stat()
        if signature == self._signature:
            return False
        self._signature = signature
        if signature is None:
            self._failed(f"policies file {self.path}: cannot read it (gone?)")
            return False
        try:
            policies = load_policies(self.path, *self.thresholds)
        except UserError as exc:
            self._failed(str(exc))
            return False
        self.current = policies  # one assignment: the swap
        self.loaded_at = time.time()
        self.error = None
        self.reloads += 1
        log.info("policies reloaded from %s: %s", self.path, ", ".join(sorted(policies)))
        return True

    def _failed(self, error: str) -> None:
        self.error = error
        log.error("policies not reloaded, the previous ones keep serving: %s", error)

    def status(self) -> dict[str, object]:
        """For ``GET /lists``: the file, when its policies were loaded, and the error if any."""
        out: dict[str, object] = {"file": self.path, "loaded_at": self.loaded_at}
        if self.error:
            out["error"] = self.error
            out["serving"] = "previous"
        return out
