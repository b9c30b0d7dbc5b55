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
from typing import Any, Iterable, Sequence

from antispam.feedback_pg import PostgresFeedbackStore
from antispam.review import (
    COLUMNS,
    INSERT_COLUMNS,
    MAX_EXCLUDE,
    RETURNING_KEY,
    ReviewItem,
    ReviewTable,
    enqueue_results,
    insert_values,
    item_from_row,
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


class PostgresReviewQueue(ReviewTable):
    """The queue in the PostgreSQL feedback database."""

    _P = "%s"
    _LOCK = " FOR UPDATE"  # the verdict's row lock orders concurrent verdicts

    def __init__(self, feedback: PostgresFeedbackStore) -> None:
        self.feedback = feedback
        self.location = feedback.location

    def close(self) -> None:
        self.feedback.close()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.feedback._query(sql, params)

    def _transaction(self) -> Any:
        return self.feedback._transaction()

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
        with self._transaction() as conn:
            inserted = conn.execute(_INSERT_BATCH, (rows,)).fetchall()

            def lookup(keys: list[tuple[str, str, int]]) -> list[tuple[Any, ...]]:
                return conn.execute(_LOOKUP_BATCH, [list(column) for column in zip(*keys)]).fetchall()

            return enqueue_results(values, inserted, lookup)

    def take(self, reviewer: str, lease_seconds: float, *, exclude: Iterable[int] = (),
             now: float | None = None) -> ReviewItem | None:
        stamp = time.time() if now is None else float(now)
        skip = [int(i) for i in exclude][:MAX_EXCLUDE]
        token = secrets.token_urlsafe(18)
        with self._transaction() as conn:
            row = conn.execute(
                "UPDATE review_items SET lease_holder = %s, lease_token = %s, lease_until = %s, "
                "leases = leases + 1 WHERE id = (SELECT id FROM review_items WHERE state = 'queued' "
                "AND (lease_until IS NULL OR lease_until <= %s) AND NOT (id = ANY(%s)) "
                "ORDER BY enqueued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                f"RETURNING {COLUMNS}",
                (reviewer, token, stamp + lease_seconds, stamp, skip)).fetchone()
        return None if row is None else item_from_row(row)
