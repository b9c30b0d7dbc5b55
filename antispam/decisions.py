"""The decision log (issue 23, item 1): what ``/predict`` decided for each text, and why, written
off the request path.

One :class:`Decision` per text of a ``/predict`` answer: the request id the answer carries, the
text's position in the request and its ``data_id``, who asked (key id), the policy, the model
name and version, the calibrated probability, the suggestion and what decided it (``decided_by``:
``model``, ``block_list``, ``allow_list``, ``contact_escalation``), the list matches and contact
kinds, the SHA-256 of the text as sent, and the text itself (kept in memory; the store keeps it
only as long as the text retention allows, :class:`TextRetention`).

:class:`DecisionLog` takes them from the handler and writes them in a thread of its own:

* **The request never waits and never fails for it.** :meth:`DecisionLog.submit` puts the
  records on a bounded queue (``put_nowait``) and returns; a full queue drops them, counted
  (``queue_full``). The writer thread drains the queue in batches (one transaction each) into the
  store; a batch the store refuses (down, disk full) is dropped, counted (``store_error``), and
  the writer goes on with the next one. Why drop rather than buffer more: the queue is the only
  memory the log may take, and a store that is down for minutes would otherwise grow it without
  bound; the loss is visible in ``antispam_decisions_dropped_total{reason}``.
* **Batches**: one fsync (SQLite) or one round trip set (PostgreSQL) per batch of up to
  :data:`BATCH` records instead of per text; under load a batch fills, when idle a record waits at
  most :data:`LINGER_SECONDS` for company.
* **Listeners** (:meth:`DecisionLog.add_listener`): called in the writer thread with each batch
  after it is stored (the review queue enqueues ``review`` decisions there). A listener's
  exception is logged and counted, never stops the writer.
* **Shutdown**: :meth:`DecisionLog.close` stops taking records, lets the writer store what is
  queued for at most ``timeout`` seconds, and counts what is left as dropped (``shutdown``).

This module holds no SQL: the stores (:mod:`antispam.decision_store` for SQLite,
:mod:`antispam.decision_store_pg` for PostgreSQL) implement :class:`DecisionStorage`.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

log = logging.getLogger("antispam.decisions")

BATCH = 500  # most records in one store transaction
LINGER_SECONDS = 0.2  # how long the writer waits to fill a batch once it has a record
DROP_REASONS = ("queue_full", "store_error", "shutdown")
SUGGESTIONS = ("block", "review", "pass")
FIND_LIMIT = 1000  # most decisions one find answers


@dataclass(slots=True)
class Decision:
    """One text's decision as ``/predict`` answered it (docs/contracts.md#decision-log).

    Built on the request path for every text, so it is a plain slotted class: a frozen
    dataclass's ``__init__`` (``object.__setattr__`` per field) cost about 7x as much, measured.
    Once submitted, a record belongs to the writer, which sets ``text``/``text_until`` by the
    retention before storing it; listeners get the stored records and must treat them as
    read-only (they share them).

    ``text`` is the text as sent; it is in memory for the writer, which stores it only when
    :class:`TextRetention` keeps texts of this suggestion (``text_until`` then says until when).
    A decision read back from the store has ``text`` None once its window has passed."""

    request_id: str
    index: int  # position of the text in the request (0 for GET and a single POST text)
    time: float  # unix seconds when the answer was computed
    key_id: str  # who asked: an API key id (never the key), "anonymous" when keys are off
    policy: str
    model_name: str
    model_version: int | None
    probability: float  # spam_probability as answered: calibrated when the version has a calibration
    suggestion: str  # block | review | pass
    decided_by: str  # model | block_list | allow_list | contact_escalation | campaign
    text_sha256: str  # hex SHA-256 of the UTF-8 text as sent (surrogates escaped)
    data_id: str | None = None
    matches: tuple[tuple[str, str, int, int], ...] = ()  # (term, list, start, end) as answered
    contacts: tuple[str, ...] = ()  # kinds of the contacts found (mobile, qq, url ...), when looked for
    capped: str | None = None  # "too_little_text" when a block was capped to review
    text: str | None = field(default=None, repr=False)
    text_until: float | None = None  # unix seconds until which the store keeps the text

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``GET /decisions`` (docs/contracts.md#decision-log)."""
        out = asdict(self)
        out["matches"] = [{"term": t, "list": k, "start": s, "end": e} for t, k, s, e in self.matches]
        out["contacts"] = list(self.contacts)
        out["model"] = {"name": out.pop("model_name"), "version": out.pop("model_version")}
        out["spam_probability"] = out.pop("probability")
        return out


def text_sha256(text: str) -> str:
    """Hex SHA-256 of a text as sent (lone surrogates, which JSON can carry, escaped)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def from_items(items: Sequence[Mapping[str, Any]], texts: Sequence[str], *, request_id: str,
               key_id: str, data_ids: Sequence[str | None] | None = None,
               now: float | None = None) -> list[Decision]:
    """One :class:`Decision` per item of a ``/predict`` answer (the items as rendered by
    :meth:`antispam.scoring.Scorer.render`, in the request's order)."""
    stamp = time.time() if now is None else now
    ids = list(data_ids) if data_ids is not None else [None] * len(items)
    out = []
    for index, (item, text) in enumerate(zip(items, texts)):
        model = item.get("model") or {}
        version = model.get("version")
        out.append(Decision(
            request_id=request_id, index=index, time=stamp, key_id=key_id,
            policy=str(item.get("policy", "")), model_name=str(model.get("name", "")),
            model_version=None if version is None else int(version),
            probability=float(item["spam_probability"]), suggestion=str(item["suggestion"]),
            decided_by=str(item.get("decided_by", "model")), text_sha256=text_sha256(text),
            data_id=ids[index] if index < len(ids) else None,
            matches=tuple((str(m["term"]), str(m["list"]), int(m["start"]), int(m["end"]))
                          for m in item.get("matches", ())),
            contacts=tuple(str(c.get("kind", "")) for c in item.get("contacts", ())),
            capped=item.get("capped"), text=text))
    return out


@dataclass(frozen=True)
class TextRetention:
    """Whose texts the store keeps, and for how long (``decision_text_days``,
    ``decision_text_for``; docs/operations.md#decision-log).

    Default: the texts of ``block`` and ``review`` decisions for 30 days, ``pass`` texts never.
    Why: an appeal disputes a block and a moderator reviews a ``review``; both need the text,
    and both happen within days. A passed text is nobody's case, so keeping it would only be a
    copy of people's messages. The hash is always kept, so a text the user sends with an appeal
    can still be matched against the decision after its window."""

    days: float = 30.0
    suggestions: frozenset[str] = frozenset({"block", "review"})

    def until(self, decision: Decision) -> float | None:
        """When this decision's text must be gone from the store; None: do not store it."""
        if self.days <= 0 or decision.suggestion not in self.suggestions or decision.text is None:
            return None
        return decision.time + self.days * 86400.0

    @staticmethod
    def parse(days: float, suggestions: str) -> "TextRetention":
        kept = frozenset(s.strip() for s in suggestions.split(",") if s.strip())
        unknown = sorted(kept - set(SUGGESTIONS))
        if unknown:
            raise ValueError(f"decision_text_for names unknown suggestions {unknown}; "
                             f"use any of {', '.join(SUGGESTIONS)}")
        if days < 0:
            raise ValueError("decision_text_days must be >= 0")
        return TextRetention(float(days), kept)


class DecisionStorage(Protocol):
    """What the decision log needs of a store; the feedback stores implement it (SQLite in the
    same file, PostgreSQL in the same database: one ``ANTISPAM_FEEDBACK_DB``).

    Errors: :class:`antispam.feedback.FeedbackError` when the store cannot be reached or written."""

    location: str

    def add_decisions(self, batch: Sequence[Decision]) -> int:
        """Store a batch in one transaction (the texts as ``text``/``text_until`` say: a
        decision whose ``text_until`` is None is stored without its text); how many."""

    def find_decisions(self, *, request_id: str | None = None, data_id: str | None = None,
                       key_id: str | None = None, limit: int = 100,
                       now: float | None = None) -> list[Decision]:
        """Decisions of one request and/or one data id (and key, when given), newest first, at most
        ``limit``; texts only while their window lasts."""

    def prune_decisions(self, retention_days: float, text_days: float, *,
                        now: float | None = None) -> tuple[int, int]:
        """Delete decisions older than ``retention_days`` (0: keep) and erase texts older than
        ``text_days`` or past their own window; (rows deleted, texts erased)."""

    def decision_counts(self, since: float, *, until: float | None = None) -> dict[str, Any]:
        """Texts and requests decided since ``since`` by suggestion and decided_by (the console's
        Live view across processes)."""


Listener = Callable[[Sequence[Decision]], None]


class DecisionLog:
    """The bounded queue and the writer thread; see the module docstring."""

    def __init__(self, store: DecisionStorage, *, queue_size: int = 10_000,
                 retention: TextRetention | None = None, batch: int = BATCH,
                 linger: float = LINGER_SECONDS) -> None:
        if queue_size < 1:
            raise ValueError("the decision queue needs room for at least one record")
        self.store = store
        self.retention = retention or TextRetention()
        self.batch = max(1, int(batch))
        self.linger = float(linger)
        self.queue_size = int(queue_size)
        self._queue: queue.Queue[Decision | None] = queue.Queue(maxsize=self.queue_size)
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()  # guards the counters (submit runs on the loop, the writer not)
        self.dropped: dict[str, int] = {reason: 0 for reason in DROP_REASONS}
        self.written = 0
        self.listener_errors = 0
        self.last_error: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="antispam-decision-log", daemon=True)
        self._thread.start()

    # -- the request side -----------------------------------------------------------------------

    def submit(self, decisions: Iterable[Decision]) -> int:
        """Queue decisions for the writer; never blocks, never raises. How many were queued
        (the rest were dropped and counted)."""
        queued = 0
        lost = 0
        try:
            for decision in decisions:
                if self._closed:
                    lost += 1
                    continue
                try:
                    self._queue.put_nowait(decision)
                    queued += 1
                except queue.Full:
                    lost += 1
        except Exception:  # a bug building the records must not fail the request
            log.exception("queueing decisions failed")
        if lost:
            self._count("shutdown" if self._closed else "queue_full", lost)
        return queued

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(batch)`` in the writer thread after each batch is stored."""
        with self._lock:
            self._listeners.append(listener)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    # -- the writer -----------------------------------------------------------------------------

    def _count(self, reason: str, n: int) -> None:
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def _take_batch(self) -> tuple[list[Decision], bool]:
        """Wait for a record, then up to ``linger`` seconds for more; (batch, stop seen)."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.linger
        while len(batch) < self.batch:
            timeout = deadline - time.monotonic()
            try:
                item = self._queue.get_nowait() if timeout <= 0 else self._queue.get(timeout=timeout)
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._take_batch()
            if batch:
                self._write(batch)

    def _write(self, batch: list[Decision]) -> None:
        kept = [self._with_retention(d) for d in batch]
        try:
            self.store.add_decisions(kept)
        except Exception as exc:  # the store is down, full or broken: drop, count, go on
            self._count("store_error", len(batch))
            message = f"{type(exc).__name__}: {exc}"
            if message != self.last_error:  # one line per kind of failure, not per batch
                log.warning("decision log: %d decisions dropped, the store failed: %s", len(batch), message)
            self.last_error = message
            return
        with self._lock:
            self.written += len(batch)
            listeners = list(self._listeners)
        if self.last_error is not None:
            log.info("decision log: the store takes decisions again")
            self.last_error = None
        for listener in listeners:
            try:
                listener(kept)
            except Exception:
                self.listener_errors += 1
                log.exception("a decision log listener failed")

    def _with_retention(self, decision: Decision) -> Decision:
        """The record as stored: its text cut, or its window set, by the retention. In place: once
        submitted, a record belongs to the writer (the handler keeps no reference), and a copy
        per record (``dataclasses.replace``) was most of the writer's CPU."""
        until = self.retention.until(decision)
        if until is None:
            decision.text = None
        decision.text_until = until
        return decision

    # -- shutdown -------------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> bool:
        """Stop taking records and store what is queued, for at most ``timeout`` seconds; False
        (and the rest counted as dropped, ``shutdown``) when time ran out."""
        self._closed = True
        deadline = time.monotonic() + timeout
        while True:  # the stop marker needs a free slot; the writer makes one soon
            try:
                self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()) or 0.001)
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            return True
        left = 0
        while True:  # take what is still queued, so the writer cannot store it after it was counted
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            left += item is not None
        if left:
            self._count("shutdown", left)
        log.warning("decision log: %d decisions still queued at shutdown were dropped", left)
        return False

