"""The review queue (issue 23): decisions a person must look at, leased to one moderator at a time.

What enters: every ``review`` decision of the decision log (:mod:`antispam.decisions`, off the
request path: the queue is one of its listeners) and every ``block`` a caller appeals
(``POST /appeals``). What leaves: a moderator's verdict (spam/pass), which is written as
*trusted feedback* in the same transaction (the moderator's ``labeler`` key id is the feedback
row's key id, the decision's request and data ids go with it; the queue row keeps the
feedback row's id, the source and the reason: the provenance), so the nightly retrain learns from it.

Where: in the feedback store's own database, one interface (:class:`ReviewQueue`) over two
stores: SQLite (:class:`SqliteReviewQueue`, this module: the same file ``ANTISPAM_FEEDBACK_DB``
names, on the feedback store's connection) and PostgreSQL (:mod:`antispam.review_pg`, migration
step 2 of :mod:`antispam.feedback_pg`). The same test bodies run against both
(tests/unit/test_review_stores.py).

Choices and why:

* **Leases, not assignment.** :meth:`ReviewQueue.take` hands the oldest item nobody holds to one
  moderator for ``lease_seconds`` and returns a random lease token. A moderator who closes the
  tab or goes to lunch holds nothing for ever: when the lease runs out the item is taken again
  by the next moderator who asks. PostgreSQL picks with ``FOR UPDATE SKIP LOCKED`` (concurrent
  takers skip each other's rows instead of queueing behind them); SQLite with one ``UPDATE ...
  RETURNING`` inside ``BEGIN IMMEDIATE`` (SQLite has one writer at a time, so the pick and the
  lease are one atomic step).
* **Exactly once.** :meth:`ReviewQueue.decide` needs the current lease token: the update is
  conditional on it and on the item not being decided, in the same transaction as the feedback
  row. A late verdict (the lease ran out and another moderator took the item) is refused
  (:class:`LeaseLost`, HTTP 409); a verdict on a decided item too (:class:`AlreadyDecided`), except
  the same holder repeating the same verdict (a retried request), which gets the stored answer.
  A lease that ran out but that nobody took again still decides: nobody else holds the item.
* **Depth history from the rows**, not sampled: the depth at time *t* is the number of items
  enqueued at or before *t* and not decided by *t*; the Review view's chart is that at fixed
  steps over the last hours, so every process draws the same picture and nothing samples.
* **Callbacks are rows too** (:class:`Notification`): an appeal's outcome is written in the
  decision's transaction and delivered later by :mod:`antispam.callbacks` (at least once,
  retried with backoff), so neither a crash nor a restart loses it.
"""

from __future__ import annotations

import bisect
import json
import math
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

from antispam.feedback import FeedbackStore

SOURCES = ("review", "appeal")
VERDICTS = {"spam": 1, "pass": 0}
MAX_REASON_CHARS = 500
MAX_EXCLUDE = 100
HISTORY_STEPS = 60  # points of the depth chart


class ReviewError(Exception):
    """A request the queue refuses; ``code`` is the HTTP API's error code."""

    code = "invalid_request"


class ItemNotFound(ReviewError):
    code = "not_found"


class LeaseLost(ReviewError):
    """The caller does not hold the item's lease (never took it, or it ran out and moved on)."""

    code = "lease_lost"


class AlreadyDecided(ReviewError):
    code = "already_decided"


@dataclass(frozen=True)
class ReviewItem:
    """One queue row: the decision that asked for a person, and what became of it."""

    id: int
    source: str  # review | appeal
    request_id: str | None
    index: int  # the text's position in its /predict request
    data_id: str | None
    key_id: str | None  # who asked /predict (appeal: who appealed; the same key)
    decided_at: float | None  # when the model decided (the decision log's time)
    policy: str | None
    model_name: str | None
    model_version: int | None
    probability: float | None
    suggestion: str | None  # the model's: review, or block for an appeal
    decided_by: str | None  # what decided it (model, block_list ...)
    matches: list[Any]
    text: str
    appeal_reason: str | None
    enqueued_at: float
    state: str  # queued | decided
    lease_holder: str | None = None
    lease_until: float | None = None
    leases: int = 0  # how often it was taken
    verdict: str | None = None  # spam | pass
    reason: str | None = None
    reviewer: str | None = None
    reviewed_at: float | None = None
    feedback_id: int | None = None
    lease_token: str | None = field(default=None, repr=False)

    def public(self, *, with_text: bool = True) -> dict[str, Any]:
        """The item as the API shows it (never the lease token: only :meth:`ReviewQueue.take`
        hands that out, to the holder)."""
        shown = asdict(self)
        shown.pop("lease_token")
        if not with_text:
            shown.pop("text")
        return shown


@dataclass(frozen=True)
class Notification:
    """A callback to deliver: an appeal's outcome for the key that appealed."""

    id: int
    item_id: int
    key_id: str
    payload: dict[str, Any]
    attempts: int
    created_at: float
    next_at: float


@dataclass(frozen=True)
class QueueDepth:
    """The queued items of one source (``review``/``appeal``): how many, when the oldest was
    enqueued (None: none queued), how many a moderator holds right now."""

    depth: int
    oldest_enqueued_at: float | None
    leased: int


def queue_depths(rows: Iterable[Sequence[Any]]) -> dict[str, QueueDepth]:
    """:meth:`ReviewQueue.queued` from :data:`QUEUED_BY_SOURCE`'s rows; every source, 0 when none."""
    found = {r[0]: QueueDepth(int(r[1]), None if r[2] is None else float(r[2]), int(r[3] or 0)) for r in rows}
    return {source: found.get(source, QueueDepth(0, None, 0)) for source in SOURCES}


# One grouped read over the queued rows (index on queued state and enqueue time): depth, oldest and
# leased per source. ``GET /review/stats`` and the /metrics gauges (antispam.review_metrics).
QUEUED_BY_SOURCE = ("SELECT source, COUNT(*), MIN(enqueued_at), SUM(CASE WHEN lease_until > {p} THEN 1 ELSE 0 END) "
                    "FROM review_items WHERE state = 'queued' GROUP BY source")


class ReviewQueue(Protocol):
    """What the service's review and appeal routes, the decision-log listener and the callback
    sender use; SQLite and PostgreSQL behave the same. Errors: :class:`ReviewError` subclasses for
    refused requests, :class:`antispam.feedback.FeedbackError` when the store is down (503),
    :class:`antispam.feedback.FeedbackRefused` when the moderator's feedback quota or the store
    cap refuses the verdict (nothing is decided then)."""

    location: str

    def enqueue(self, items: Sequence[dict[str, Any]], *, now: float | None = None) -> list[tuple[int, bool]]: ...

    def take(self, reviewer: str, lease_seconds: float, *, exclude: Iterable[int] = (),
             now: float | None = None) -> ReviewItem | None: ...

    def release(self, item_id: int, token: str, reviewer: str) -> None: ...

    def decide(self, item_id: int, token: str, reviewer: str, verdict: str, reason: str | None,
               normalize: Callable[[str], str], *, notify: bool | Callable[[str], bool] = False,
               now: float | None = None) -> tuple[ReviewItem, bool]: ...

    def get(self, item_id: int) -> ReviewItem | None: ...

    def find_appeal(self, request_id: str, index: int) -> ReviewItem | None: ...

    def stats(self, *, hours: float = 6.0, now: float | None = None) -> dict[str, Any]: ...

    def queued(self, *, now: float | None = None) -> dict[str, QueueDepth]: ...

    def due_notifications(self, *, limit: int = 20, claim_seconds: float = 30.0,
                          now: float | None = None) -> list[Notification]: ...

    def notification_done(self, notification_id: int, *, now: float | None = None) -> None: ...

    def notification_failed(self, notification_id: int, error: str, next_at: float | None) -> None: ...

    def prune(self, retention_days: float, text_days: float, *, now: float | None = None) -> tuple[int, int]: ...

    def close(self) -> None: ...


# -- shared pieces (one place, so the two stores cannot drift) ------------------------------------

COLUMNS = ("id, source, request_id, item_index, data_id, key_id, decided_at, policy, model_name, "
           "model_version, probability, suggestion, decided_by, matches, text, appeal_reason, "
           "enqueued_at, state, lease_holder, lease_until, leases, verdict, reason, reviewer, "
           "reviewed_at, feedback_id, lease_token")
INSERT_COLUMNS = ("source", "request_id", "item_index", "data_id", "key_id", "decided_at", "policy",
                  "model_name", "model_version", "probability", "suggestion", "decided_by", "matches",
                  "text", "appeal_reason", "enqueued_at")


def item_from_row(row: Sequence[Any]) -> ReviewItem:
    def opt(value: Any, kind: Callable[[Any], Any]) -> Any:
        return None if value is None else kind(value)

    try:
        matches = json.loads(row[13]) if row[13] else []
    except ValueError:
        matches = []
    return ReviewItem(int(row[0]), row[1], row[2], int(row[3]), row[4], row[5], opt(row[6], float), row[7],
                      row[8], opt(row[9], int), opt(row[10], float), row[11], row[12], matches, row[14],
                      row[15], float(row[16]), row[17], row[18], opt(row[19], float), int(row[20]), row[21],
                      row[22], row[23], opt(row[24], float), opt(row[25], int), row[26])


def insert_values(item: dict[str, Any], stamp: float) -> tuple[Any, ...]:
    """One enqueue's column values, checked: a text is required, the source must be known."""
    source = item.get("source", "review")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    text = item.get("text")
    if not isinstance(text, str) or not text:
        raise ValueError("a review item needs its text")
    version = item.get("model_version")
    probability = item.get("probability")
    decided_at = item.get("time")
    return (source, item.get("request_id"), int(item.get("index", 0) or 0), item.get("data_id"),
            item.get("key_id"), None if decided_at is None else float(decided_at), item.get("policy"),
            item.get("model_name"),
            None if version is None else int(version),
            _finite(probability), item.get("suggestion"),
            item.get("decided_by"), json.dumps(item.get("matches") or [], ensure_ascii=False),
            text, item.get("appeal_reason"), stamp)


def _finite(value: Any) -> float | None:
    """A probability as stored: None when absent or not a finite number. A NaN would fail the
    PostgreSQL batch's JSON (``allow_nan=False``) and with it every item of the batch; a list
    decision of ``review`` can carry a probability the model never produced."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


ENQUEUE_CHUNK = 500  # rows per multi-row INSERT (SQLite: 16 x 500 bound values, under its 32766 limit)
RETURNING_KEY = "id, source, request_id, item_index"


def enqueue_results(values: Sequence[tuple[Any, ...]], inserted: Iterable[Sequence[Any]],
                    lookup: Callable[[list[tuple[str, str, int]]], Iterable[Sequence[Any]]]) -> list[tuple[int, bool]]:
    """``enqueue``'s answer, (id, added) per item in input order, from a multi-row insert that
    skipped the (source, request id, index) already there: ``inserted`` are its RETURNING rows
    ``(id, source, request_id, item_index)`` in any order; ``lookup(keys)`` returns the same
    columns of the rows already there (called once, only when some item was not inserted).

    An item whose key repeats within one call is added once (the first) and answered
    ``(that id, False)`` after, as one insert per item would. A NULL request id never conflicts
    (SQL's NULLs are distinct), so every such item is a new row; they get their ids in input
    order (ids grow in insertion order)."""
    fresh: dict[tuple[Any, Any, int], list[int]] = {}
    for row in sorted(inserted, key=lambda r: int(r[0]), reverse=True):
        fresh.setdefault((row[1], row[2], int(row[3])), []).append(int(row[0]))
    known: dict[tuple[Any, Any, int], int] = {}
    out: list[tuple[int, bool] | None] = []
    missing: list[tuple[str, str, int]] = []
    for row in values:
        key = (row[0], row[1], int(row[2]))
        ids = fresh.get(key)
        if ids:
            known.setdefault(key, ids[-1])
            out.append((ids.pop(), True))
        else:
            if key not in known and key[1] is not None:
                missing.append(key)
                known[key] = 0
            out.append(None)
    if missing:
        for row in lookup(list(dict.fromkeys(missing))):
            known[(row[1], row[2], int(row[3]))] = int(row[0])
    return [answer if answer is not None else (known.get((row[0], row[1], int(row[2])), 0), False)
            for answer, row in zip(out, values)]


def check_verdict(verdict: str, reason: str | None) -> tuple[int, str | None]:
    if verdict not in VERDICTS:
        raise ReviewError(f"verdict must be 'spam' or 'pass', got {str(verdict)[:40]!r}")
    if reason is not None:
        if not isinstance(reason, str):
            raise ReviewError("reason must be a string")
        reason = reason.strip() or None
        if reason is not None and len(reason) > MAX_REASON_CHARS:
            raise ReviewError(f"reason has {len(reason)} characters; at most {MAX_REASON_CHARS}")
    return VERDICTS[verdict], reason


def check_decidable(item: ReviewItem | None, item_id: int, token: str, reviewer: str,
                    verdict: str) -> ReviewItem | None:
    """Why this verdict may not be stored (raised), or the stored item when it repeats the
    holder's own verdict (returned: answered as it was), or None (go ahead)."""
    if item is None:
        raise ItemNotFound(f"no review item {item_id}")
    holder = item.lease_token is not None and secrets.compare_digest(item.lease_token, token) \
        and item.lease_holder == reviewer
    if item.state == "decided":
        if holder and item.verdict == verdict:
            return item
        raise AlreadyDecided(f"review item {item_id} was already decided ({item.verdict}) by "
                             f"{item.reviewer}")
    if not holder:
        raise LeaseLost(f"you do not hold the lease of review item {item_id} (it ran out and was "
                        "taken again, or it was never yours): take the next item")
    return None


def wants_callback(notify: bool | Callable[[str], bool], key_id: str) -> bool:
    """``decide``'s ``notify``: True/False, or a test of the appealing key id (the service: whether
    the keys file gives that key a callback URL; without one no notification row is written)."""
    return bool(notify(key_id)) if callable(notify) else bool(notify)


def appeal_payload(item: ReviewItem) -> dict[str, Any]:
    """The callback body of an appeal's outcome (docs/contracts.md#appeals)."""
    return {"event": "appeal.decided", "appeal_id": item.id, "request_id": item.request_id,
            "index": item.index, "data_id": item.data_id, "suggestion": item.suggestion,
            "verdict": item.verdict, "reversed": item.verdict == "pass" and item.suggestion == "block",
            "reason": item.reason, "reviewed_at": item.reviewed_at}


def depth_history(rows: Iterable[tuple[float, float | None]], now: float, hours: float,
                  steps: int = HISTORY_STEPS) -> list[dict[str, float]]:
    """Queue depth at ``steps`` evenly spaced times over the last ``hours`` from (enqueued,
    decided or None) pairs: the items enqueued at or before t and not decided by t."""
    enqueued, decided = [], []
    for start, end in rows:
        enqueued.append(float(start))
        if end is not None:
            decided.append(float(end))
    enqueued.sort()
    decided.sort()
    step = hours * 3600 / steps
    points = []
    for n in range(steps + 1):
        t = now - hours * 3600 + n * step
        depth = bisect.bisect_right(enqueued, t) - bisect.bisect_right(decided, t)
        points.append({"t": round(t, 3), "depth": max(0, depth)})
    return points


def backoff(attempts: int, base: float, cap: float = 3600.0) -> float:
    """Seconds before attempt ``attempts + 1``: base × 2^(attempts-1), capped, with ±20 % jitter
    so receivers coming back up are not hit by every sender at once."""
    delay = min(cap, base * math.pow(2, max(0, attempts - 1)))
    return delay * (0.8 + 0.4 * secrets.randbelow(1000) / 1000)


# -- SQLite ---------------------------------------------------------------------------------------

_SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS review_items (
    id            INTEGER PRIMARY KEY,
    source        TEXT    NOT NULL CHECK (source IN ('review', 'appeal')),
    request_id    TEXT,
    item_index    INTEGER NOT NULL DEFAULT 0,
    data_id       TEXT,
    key_id        TEXT,
    decided_at    REAL,
    policy        TEXT,
    model_name    TEXT,
    model_version INTEGER,
    probability   REAL,
    suggestion    TEXT,
    decided_by    TEXT,
    matches       TEXT,
    text          TEXT    NOT NULL,
    appeal_reason TEXT,
    enqueued_at   REAL    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'decided')),
    lease_holder  TEXT,
    lease_token   TEXT,
    lease_until   REAL,
    leases        INTEGER NOT NULL DEFAULT 0,
    verdict       TEXT,
    reason        TEXT,
    reviewer      TEXT,
    reviewed_at   REAL,
    feedback_id   INTEGER,
    UNIQUE (source, request_id, item_index)
)""",
    "CREATE INDEX IF NOT EXISTS review_items_queued ON review_items (state, enqueued_at)",
    "CREATE INDEX IF NOT EXISTS review_items_reviewed ON review_items (reviewed_at)",
    "CREATE INDEX IF NOT EXISTS review_items_data ON review_items (data_id)",
    """CREATE TABLE IF NOT EXISTS review_notifications (
    id           INTEGER PRIMARY KEY,
    item_id      INTEGER NOT NULL,
    key_id       TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    created_at   REAL    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    delivered_at REAL,
    last_error   TEXT
)""",
    "CREATE INDEX IF NOT EXISTS review_notifications_due ON review_notifications (state, next_at)",
)


class ReviewTable:
    """The queue's SQL that reads the same on both stores, written once: the stores differ in
    their parameter mark (:attr:`_P`), in how a row is locked for the verdict (:attr:`_LOCK`:
    ``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds its one write lock),
    in how a transaction is had (:meth:`_transaction`, :meth:`_query`), and in the two statements
    whose syntax differs (``enqueue``, ``take``), which each store writes itself. The same split
    as :class:`antispam.decision_store.DecisionTable`."""

    _P = "?"
    _LOCK = ""
    feedback: Any

    def _transaction(self) -> Any:
        raise NotImplementedError

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _get(self, conn: Any, item_id: int, *, lock: bool = False) -> ReviewItem | None:
        row = conn.execute(f"SELECT {COLUMNS} FROM review_items WHERE id = {self._P}"
                           + (self._LOCK if lock else ""), (int(item_id),)).fetchone()
        return None if row is None else item_from_row(row)

    def get(self, item_id: int) -> ReviewItem | None:
        rows = self._query(f"SELECT {COLUMNS} FROM review_items WHERE id = {self._P}", (int(item_id),))
        return item_from_row(rows[0]) if rows else None

    def find_appeal(self, request_id: str, index: int) -> ReviewItem | None:
        p = self._P
        rows = self._query(f"SELECT {COLUMNS} FROM review_items WHERE source = 'appeal' AND request_id = {p} "
                           f"AND item_index = {p}", (request_id, int(index)))
        return item_from_row(rows[0]) if rows else None

    def release(self, item_id: int, token: str, reviewer: str) -> None:
        with self._transaction() as conn:
            item = self._get(conn, item_id, lock=True)
            if check_decidable(item, item_id, token, reviewer, "") is None:
                conn.execute("UPDATE review_items SET lease_until = NULL, lease_holder = NULL, "
                             f"lease_token = NULL WHERE id = {self._P}", (item_id,))

    def decide(self, item_id: int, token: str, reviewer: str, verdict: str, reason: str | None,
               normalize: Callable[[str], str], *, notify: bool | Callable[[str], bool] = False,
               now: float | None = None) -> tuple[ReviewItem, bool]:
        """Store the verdict and its feedback row in one transaction; (item, repeated). The
        item's row is locked first (PostgreSQL), which orders concurrent verdicts."""
        label, reason = check_verdict(verdict, reason)
        stamp = time.time() if now is None else float(now)
        p = self._P
        with self._transaction() as conn:
            item = self._get(conn, item_id, lock=True)
            repeated = check_decidable(item, item_id, token, reviewer, verdict)
            if repeated is not None:
                return repeated, True
            assert item is not None
            record = self.feedback.add_in(conn, item.text, normalize(item.text), label, item.model_version,
                                          now=stamp, key_id=reviewer, request_id=item.request_id,
                                          data_id=item.data_id)
            conn.execute(f"UPDATE review_items SET state = 'decided', verdict = {p}, reason = {p}, reviewer = {p}, "
                         f"reviewed_at = {p}, feedback_id = {p}, lease_until = NULL WHERE id = {p}",
                         (verdict, reason, reviewer, stamp, int(record["id"]), item_id))
            decided = self._get(conn, item_id)
            assert decided is not None
            if decided.source == "appeal" and decided.key_id and wants_callback(notify, decided.key_id):
                conn.execute("INSERT INTO review_notifications (item_id, key_id, payload, created_at, next_at) "
                             f"VALUES ({p}, {p}, {p}, {p}, {p})",
                             (item_id, decided.key_id, json.dumps(appeal_payload(decided)), stamp, stamp))
        return decided, False

    def stats(self, *, hours: float = 6.0, now: float | None = None) -> dict[str, Any]:
        stamp = time.time() if now is None else float(now)
        since = stamp - hours * 3600
        p = self._P
        by_source = self._query(QUEUED_BY_SOURCE.format(p=p), (stamp,))
        rows = self._query(f"SELECT enqueued_at, reviewed_at FROM review_items WHERE enqueued_at <= {p} AND "
                           f"(reviewed_at IS NULL OR reviewed_at > {p})", (stamp, since))
        decided = self._query(f"SELECT verdict, COUNT(*) FROM review_items WHERE reviewed_at > {p} "
                              "GROUP BY verdict", (since,))
        notes = self._query("SELECT state, COUNT(*) FROM review_notifications GROUP BY state")
        return summarize(stamp, hours, by_source, rows, decided, notes)

    def queued(self, *, now: float | None = None) -> dict[str, QueueDepth]:
        stamp = time.time() if now is None else float(now)
        return queue_depths(self._query(QUEUED_BY_SOURCE.format(p=self._P), (stamp,)))

    def due_notifications(self, *, limit: int = 20, claim_seconds: float = 30.0,
                          now: float | None = None) -> list[Notification]:
        """Claim up to ``limit`` pending callbacks that are due, for ``claim_seconds`` (another
        process's sender skips them meanwhile: ``SKIP LOCKED`` on PostgreSQL)."""
        stamp = time.time() if now is None else float(now)
        p = self._P
        if not self._query(DUE_CHECK.format(p=p), (stamp,)):  # a read: no write lock for nothing
            return []
        skip_locked = " FOR UPDATE SKIP LOCKED" if self._LOCK else ""
        with self._transaction() as conn:
            rows = conn.execute(
                f"UPDATE review_notifications SET next_at = {p} WHERE id IN (SELECT id FROM review_notifications "
                f"WHERE state = 'pending' AND next_at <= {p} ORDER BY next_at LIMIT {p}{skip_locked}) "
                "RETURNING id, item_id, key_id, payload, attempts, created_at, next_at",
                (stamp + claim_seconds, stamp, int(limit))).fetchall()
        return [notification_from_row(r) for r in rows]

    def notification_done(self, notification_id: int, *, now: float | None = None) -> None:
        stamp = time.time() if now is None else float(now)
        p = self._P
        with self._transaction() as conn:
            conn.execute(f"UPDATE review_notifications SET state = 'delivered', delivered_at = {p}, "
                         f"attempts = attempts + 1, last_error = NULL WHERE id = {p}", (stamp, notification_id))

    def notification_failed(self, notification_id: int, error: str, next_at: float | None) -> None:
        p = self._P
        with self._transaction() as conn:
            conn.execute(f"UPDATE review_notifications SET attempts = attempts + 1, last_error = {p}, "
                         f"state = {p}, next_at = COALESCE({p}, next_at) WHERE id = {p}",
                         (error[:300], "pending" if next_at is not None else "failed", next_at,
                          notification_id))

    def prune(self, retention_days: float, text_days: float, *,
              now: float | None = None) -> tuple[int, int]:
        """Retention (``antispam feedback prune``, the decision log's settings): decided items
        reviewed more than ``retention_days`` ago go (with their delivered or failed callbacks; one
        still pending keeps its item), and the text of decided items reviewed more than ``text_days``
        ago is erased (the verdict's feedback row keeps its own copy under the feedback retention).
        Queued items keep their text: a person still has to read it. (deleted, texts erased)."""
        rows_before, texts_before = prune_cutoffs(retention_days, text_days, now)
        deleted = erased = 0
        p = self._P
        with self._transaction() as conn:
            if rows_before is not None:
                conn.execute(PRUNE_DELETE[0].format(p=p), (rows_before,))
                deleted = conn.execute(PRUNE_DELETE[1].format(p=p), (rows_before,)).rowcount
            if texts_before is not None:
                erased = conn.execute(PRUNE_TEXTS.format(p=p), (texts_before,)).rowcount
        return int(deleted), int(erased)


class SqliteReviewQueue(ReviewTable):
    """The queue in the SQLite feedback file, on the feedback store's connection and lock (one
    writer per process; SQLite's own lock between processes)."""

    _P = "?"
    _LOCK = ""  # BEGIN IMMEDIATE already holds the one write lock

    def __init__(self, feedback: FeedbackStore) -> None:
        self.feedback = feedback
        self.location = feedback.location
        self._ready = False

    def _transaction(self) -> Any:
        store = self.feedback
        if not self._ready:
            with store._transaction() as conn:
                for statement in _SQLITE_SCHEMA:
                    conn.execute(statement)
            self._ready = True
        return store._transaction()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not self._ready:
            with self._transaction():
                pass
        return self.feedback._query(sql, params)

    def close(self) -> None:
        self.feedback.close()

    def enqueue(self, items: Sequence[dict[str, Any]], *, now: float | None = None) -> list[tuple[int, bool]]:
        """Add items; one already queued for the same (source, request id, index) is not added
        again. Returns (id, added) per item. One multi-row ``INSERT OR IGNORE ... RETURNING`` per
        :data:`ENQUEUE_CHUNK` items (and one lookup only when some were already there), in one
        transaction: the decision log's listener enqueues a whole batch at once."""
        stamp = time.time() if now is None else float(now)
        values = [insert_values(item, stamp) for item in items]
        if not values:
            return []
        row_marks = "(" + ", ".join("?" * len(INSERT_COLUMNS)) + ")"
        inserted: list[tuple[Any, ...]] = []
        with self._transaction() as conn:
            for start in range(0, len(values), ENQUEUE_CHUNK):
                chunk = values[start:start + ENQUEUE_CHUNK]
                inserted += conn.execute(
                    f"INSERT OR IGNORE INTO review_items ({', '.join(INSERT_COLUMNS)}) VALUES "
                    f"{', '.join([row_marks] * len(chunk))} RETURNING {RETURNING_KEY}",
                    [v for row in chunk for v in row]).fetchall()

            def lookup(keys: list[tuple[str, str, int]]) -> list[tuple[Any, ...]]:
                found: list[tuple[Any, ...]] = []
                for start in range(0, len(keys), ENQUEUE_CHUNK):
                    chunk = keys[start:start + ENQUEUE_CHUNK]
                    found += conn.execute(
                        f"SELECT {RETURNING_KEY} FROM review_items WHERE (source, request_id, item_index) IN "
                        f"(VALUES {', '.join(['(?, ?, ?)'] * len(chunk))})", [v for k in chunk for v in k]).fetchall()
                return found

            return enqueue_results(values, inserted, lookup)

    def take(self, reviewer: str, lease_seconds: float, *, exclude: Iterable[int] = (),
             now: float | None = None) -> ReviewItem | None:
        stamp = time.time() if now is None else float(now)
        skip = [int(i) for i in exclude][:MAX_EXCLUDE]
        not_in = f" AND id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
        token = secrets.token_urlsafe(18)
        with self._transaction() as conn:
            row = conn.execute(
                "UPDATE review_items SET lease_holder = ?, lease_token = ?, lease_until = ?, "
                "leases = leases + 1 WHERE id = (SELECT id FROM review_items WHERE state = 'queued' "
                f"AND (lease_until IS NULL OR lease_until <= ?){not_in} ORDER BY enqueued_at, id LIMIT 1) "
                f"RETURNING {COLUMNS}",
                (reviewer, token, stamp + lease_seconds, stamp, *skip)).fetchone()
        return None if row is None else item_from_row(row)


PRUNE_DELETE = ("DELETE FROM review_notifications WHERE state <> 'pending' AND item_id IN (SELECT id FROM "
                "review_items WHERE state = 'decided' AND reviewed_at < {p})",
                "DELETE FROM review_items WHERE state = 'decided' AND reviewed_at < {p} AND NOT EXISTS "
                "(SELECT 1 FROM review_notifications n WHERE n.item_id = review_items.id)")
DUE_CHECK = "SELECT 1 FROM review_notifications WHERE state = 'pending' AND next_at <= {p} LIMIT 1"
PRUNE_TEXTS = "UPDATE review_items SET text = '' WHERE state = 'decided' AND reviewed_at < {p} AND text <> ''"


def prune_cutoffs(retention_days: float, text_days: float, now: float | None) -> tuple[float | None, float | None]:
    """The reviewed-before times of :meth:`ReviewQueue.prune` (None: keep)."""
    stamp = time.time() if now is None else float(now)
    return (stamp - retention_days * 86400 if retention_days > 0 else None,
            stamp - text_days * 86400 if text_days > 0 else None)


def decision_item(decision: Any, source: str = "review") -> dict[str, Any]:
    """A decision-log record (:class:`antispam.decisions.Decision`) as an enqueue item."""
    return {"source": source, "request_id": decision.request_id, "index": decision.index,
            "data_id": decision.data_id, "key_id": decision.key_id, "time": decision.time,
            "policy": decision.policy, "model_name": decision.model_name, "model_version": decision.model_version,
            "probability": decision.probability, "suggestion": decision.suggestion,
            "decided_by": decision.decided_by, "text": decision.text,
            "matches": [{"term": m[0], "list": m[1], "start": m[2], "end": m[3]} for m in decision.matches]}


def review_listener(queue: ReviewQueue) -> Callable[[Sequence[Any]], None]:
    """The decision log's listener (called in its writer thread with each stored batch) that puts
    the batch's ``review`` decisions into the queue. A review decision whose text the log did not
    keep (``decision_text_for`` without ``review``) cannot be reviewed and is counted, not queued.
    The whole batch's review decisions go in one ``enqueue`` (one statement); when it fails (store
    down) they are counted as ``failed`` and the error goes on to the log, which logs and counts
    it: they are not retried (the decisions themselves are stored). The counters (``enqueued``,
    ``without_text``, ``failed``) are exported by :mod:`antispam.metrics`."""
    def enqueue_reviews(batch: Sequence[Any]) -> None:
        reviews = [d for d in batch if d.suggestion == "review"]
        kept = [decision_item(d) for d in reviews if d.text]
        enqueue_reviews.without_text += len(reviews) - len(kept)  # type: ignore[attr-defined]
        if kept:
            try:
                queue.enqueue(kept)
            except Exception:
                enqueue_reviews.failed += len(kept)  # type: ignore[attr-defined]
                raise
            enqueue_reviews.enqueued += len(kept)  # type: ignore[attr-defined]

    enqueue_reviews.without_text = 0  # type: ignore[attr-defined]
    enqueue_reviews.enqueued = 0  # type: ignore[attr-defined]
    enqueue_reviews.failed = 0  # type: ignore[attr-defined]
    return enqueue_reviews


def notification_from_row(row: Sequence[Any]) -> Notification:
    payload = row[3] if isinstance(row[3], dict) else json.loads(row[3])
    return Notification(int(row[0]), int(row[1]), row[2], payload, int(row[4]), float(row[5]), float(row[6]))


def summarize(now: float, hours: float, by_source: Sequence[Sequence[Any]],
              history_rows: Sequence[Sequence[Any]], decided: Sequence[Sequence[Any]],
              notes: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """``GET /review/stats`` from the stores' aggregate rows."""
    depth = sum(int(r[1]) for r in by_source)
    oldest = min((float(r[2]) for r in by_source if r[2] is not None), default=None)
    return {
        "depth": depth,
        "leased": sum(int(r[3] or 0) for r in by_source),
        "by_source": {source: next((int(r[1]) for r in by_source if r[0] == source), 0) for source in SOURCES},
        "oldest_age_seconds": None if oldest is None else round(max(0.0, now - oldest), 3),
        "decided": {name: next((int(r[1]) for r in decided if r[0] == name), 0) for name in VERDICTS},
        "hours": hours,
        "history": depth_history(((float(r[0]), None if r[1] is None else float(r[1])) for r in history_rows),
                                 now, hours),
        "callbacks": {state: next((int(r[1]) for r in notes if r[0] == state), 0)
                      for state in ("pending", "delivered", "failed")},
        "now": now,
    }
