"""The review queue on PostgreSQL (issue 23): the same interface and behaviour as
:class:`antispam.review.SqliteReviewQueue`, in the feedback database (migration step 2 of
:mod:`antispam.feedback_pg`), on the feedback store's connection pool.

Taking an item is one statement: ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED
LIMIT 1) RETURNING``. Two moderators (in one process or in two replicas) asking at once lock
different rows; a row another transaction is leasing right now is skipped, not waited for, and
under READ COMMITTED a row whose lease was just written by a committed transaction is re-checked
against the lease condition before it is locked, so one item never goes to two holders.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Callable, Iterable, Sequence

import psycopg

from antispam.feedback_pg import PostgresFeedbackStore
from antispam.review import (
    COLUMNS,
    DUE_CHECK,
    INSERT_COLUMNS,
    MAX_EXCLUDE,
    PRUNE_DELETE,
    PRUNE_TEXTS,
    QUEUED_BY_SOURCE,
    RETURNING_KEY,
    Notification,
    QueueDepth,
    ReviewItem,
    appeal_payload,
    check_decidable,
    check_verdict,
    enqueue_results,
    insert_values,
    item_from_row,
    notification_from_row,
    prune_cutoffs,
    queue_depths,
    summarize,
    wants_callback,
)

# The SQL types of INSERT_COLUMNS, in order: the batch travels as one JSON array of rows (one text
# parameter; Python's C JSON encoder is ~10x cheaper per row than psycopg's array dumpers) and
# json_array_elements() takes it apart in order.
_COLUMN_TYPES = ("text", "text", "integer", "text", "text", "float8", "text", "text", "bigint", "float8",
                 "text", "text", "text", "text", "text", "float8")
assert len(_COLUMN_TYPES) == len(INSERT_COLUMNS)
_INSERT_BATCH = (
    f"INSERT INTO review_items ({', '.join(INSERT_COLUMNS)}) SELECT "
    + ", ".join(f"(r.v ->> {i})::{kind}" for i, kind in enumerate(_COLUMN_TYPES))
    + " FROM json_array_elements(%s::json) WITH ORDINALITY AS r(v, n) ORDER BY r.n "
    f"ON CONFLICT (source, request_id, item_index) DO NOTHING RETURNING {RETURNING_KEY}")
_LOOKUP_BATCH = (f"SELECT {RETURNING_KEY} FROM review_items WHERE (source, request_id, item_index) IN "
                 "(SELECT * FROM unnest(%s::text[], %s::text[], %s::integer[]))")


class PostgresReviewQueue:
    """The queue in the PostgreSQL feedback database."""

    def __init__(self, feedback: PostgresFeedbackStore) -> None:
        self.feedback = feedback
        self.location = feedback.location

    def close(self) -> None:
        self.feedback.close()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.feedback._query(sql, params)

    @staticmethod
    def _get(conn: psycopg.Connection[Any], item_id: int, *, lock: bool = False) -> ReviewItem | None:
        row = conn.execute(f"SELECT {COLUMNS} FROM review_items WHERE id = %s"
                           + (" FOR UPDATE" if lock else ""), (int(item_id),)).fetchone()
        return None if row is None else item_from_row(row)

    def enqueue(self, items: Sequence[dict[str, Any]], *, now: float | None = None) -> list[tuple[int, bool]]:
        """As :meth:`antispam.review.SqliteReviewQueue.enqueue`: one statement for the whole
        batch (``INSERT ... SELECT FROM json_array_elements(<the rows>) ON CONFLICT DO NOTHING
        RETURNING``; the SQL text is the same for any batch size) and one lookup only when some
        item was already there. One round trip per row cost ~85 us CPU per review decision in the
        decision log's writer thread (i23-queue-cost); this costs ~13-18."""
        stamp = time.time() if now is None else float(now)
        values = [insert_values(item, stamp) for item in items]
        for row in values:
            if "\x00" in row[13]:
                raise ValueError("the text contains a NUL character, which the store cannot keep")
        if not values:
            return []
        rows = json.dumps(values, ensure_ascii=False, allow_nan=False)
        with self.feedback._transaction() as conn:
            inserted = conn.execute(_INSERT_BATCH, (rows,)).fetchall()

            def lookup(keys: list[tuple[str, str, int]]) -> list[tuple[Any, ...]]:
                return conn.execute(_LOOKUP_BATCH, [list(column) for column in zip(*keys)]).fetchall()

            return enqueue_results(values, inserted, lookup)

    def take(self, reviewer: str, lease_seconds: float, *, exclude: Iterable[int] = (),
             now: float | None = None) -> ReviewItem | None:
        stamp = time.time() if now is None else float(now)
        skip = [int(i) for i in exclude][:MAX_EXCLUDE]
        token = secrets.token_urlsafe(18)
        with self.feedback._transaction() as conn:
            row = conn.execute(
                "UPDATE review_items SET lease_holder = %s, lease_token = %s, lease_until = %s, "
                "leases = leases + 1 WHERE id = (SELECT id FROM review_items WHERE state = 'queued' "
                "AND (lease_until IS NULL OR lease_until <= %s) AND NOT (id = ANY(%s)) "
                "ORDER BY enqueued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                f"RETURNING {COLUMNS}",
                (reviewer, token, stamp + lease_seconds, stamp, skip)).fetchone()
        return None if row is None else item_from_row(row)

    def release(self, item_id: int, token: str, reviewer: str) -> None:
        with self.feedback._transaction() as conn:
            item = self._get(conn, item_id, lock=True)
            if check_decidable(item, item_id, token, reviewer, "") is None:
                conn.execute("UPDATE review_items SET lease_until = NULL, lease_holder = NULL, "
                             "lease_token = NULL WHERE id = %s", (item_id,))

    def get(self, item_id: int) -> ReviewItem | None:
        rows = self._query(f"SELECT {COLUMNS} FROM review_items WHERE id = %s", (int(item_id),))
        return item_from_row(rows[0]) if rows else None

    def find_appeal(self, request_id: str, index: int) -> ReviewItem | None:
        rows = self._query(f"SELECT {COLUMNS} FROM review_items WHERE source = 'appeal' AND request_id = %s "
                           "AND item_index = %s", (request_id, int(index)))
        return item_from_row(rows[0]) if rows else None

    def decide(self, item_id: int, token: str, reviewer: str, verdict: str, reason: str | None,
               normalize: Callable[[str], str], *, notify: bool | Callable[[str], bool] = False,
               now: float | None = None) -> tuple[ReviewItem, bool]:
        label, reason = check_verdict(verdict, reason)
        stamp = time.time() if now is None else float(now)
        with self.feedback._transaction() as conn:
            item = self._get(conn, item_id, lock=True)  # the row lock orders concurrent verdicts
            repeated = check_decidable(item, item_id, token, reviewer, verdict)
            if repeated is not None:
                return repeated, True
            assert item is not None
            record = self.feedback.add_in(conn, item.text, normalize(item.text), label, item.model_version,
                                          now=stamp, key_id=reviewer, request_id=item.request_id,
                                          data_id=item.data_id)
            conn.execute("UPDATE review_items SET state = 'decided', verdict = %s, reason = %s, reviewer = %s, "
                         "reviewed_at = %s, feedback_id = %s, lease_until = NULL WHERE id = %s",
                         (verdict, reason, reviewer, stamp, int(record["id"]), item_id))
            decided = self._get(conn, item_id)
            assert decided is not None
            if decided.source == "appeal" and decided.key_id and wants_callback(notify, decided.key_id):
                conn.execute("INSERT INTO review_notifications (item_id, key_id, payload, created_at, next_at) "
                             "VALUES (%s, %s, %s, %s, %s)", (item_id, decided.key_id,
                                                             json.dumps(appeal_payload(decided)), stamp, stamp))
        return decided, False

    def stats(self, *, hours: float = 6.0, now: float | None = None) -> dict[str, Any]:
        stamp = time.time() if now is None else float(now)
        since = stamp - hours * 3600
        by_source = self._query(QUEUED_BY_SOURCE.format(p="%s"), (stamp,))
        rows = self._query("SELECT enqueued_at, reviewed_at FROM review_items WHERE enqueued_at <= %s AND "
                           "(reviewed_at IS NULL OR reviewed_at > %s)", (stamp, since))
        decided = self._query("SELECT verdict, COUNT(*) FROM review_items WHERE reviewed_at > %s "
                              "GROUP BY verdict", (since,))
        notes = self._query("SELECT state, COUNT(*) FROM review_notifications GROUP BY state")
        return summarize(stamp, hours, by_source, rows, decided, notes)

    def queued(self, *, now: float | None = None) -> dict[str, QueueDepth]:
        stamp = time.time() if now is None else float(now)
        return queue_depths(self._query(QUEUED_BY_SOURCE.format(p="%s"), (stamp,)))

    def due_notifications(self, *, limit: int = 20, claim_seconds: float = 30.0,
                          now: float | None = None) -> list[Notification]:
        stamp = time.time() if now is None else float(now)
        if not self._query(DUE_CHECK.format(p="%s"), (stamp,)):
            return []
        with self.feedback._transaction() as conn:
            rows = conn.execute(
                "UPDATE review_notifications SET next_at = %s WHERE id IN (SELECT id FROM review_notifications "
                "WHERE state = 'pending' AND next_at <= %s ORDER BY next_at LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING id, item_id, key_id, payload, attempts, created_at, next_at",
                (stamp + claim_seconds, stamp, int(limit))).fetchall()
        return [notification_from_row(r) for r in rows]

    def notification_done(self, notification_id: int, *, now: float | None = None) -> None:
        stamp = time.time() if now is None else float(now)
        with self.feedback._transaction() as conn:
            conn.execute("UPDATE review_notifications SET state = 'delivered', delivered_at = %s, "
                         "attempts = attempts + 1, last_error = NULL WHERE id = %s", (stamp, notification_id))

    def notification_failed(self, notification_id: int, error: str, next_at: float | None) -> None:
        with self.feedback._transaction() as conn:
            conn.execute("UPDATE review_notifications SET attempts = attempts + 1, last_error = %s, "
                         "state = %s, next_at = COALESCE(%s, next_at) WHERE id = %s",
                         (error[:300], "pending" if next_at is not None else "failed", next_at,
                          notification_id))

    def prune(self, retention_days: float, text_days: float, *, now: float | None = None) -> tuple[int, int]:
        """As :meth:`antispam.review.SqliteReviewQueue.prune`."""
        rows_before, texts_before = prune_cutoffs(retention_days, text_days, now)
        deleted = erased = 0
        with self.feedback._transaction() as conn:
            if rows_before is not None:
                conn.execute(PRUNE_DELETE[0].format(p="%s"), (rows_before,))
                deleted = conn.execute(PRUNE_DELETE[1].format(p="%s"), (rows_before,)).rowcount
            if texts_before is not None:
                erased = conn.execute(PRUNE_TEXTS.format(p="%s"), (texts_before,)).rowcount
        return int(deleted), int(erased)
