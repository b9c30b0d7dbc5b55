"""Which review queue goes with a feedback store (issue 23): the queue lives in the feedback
store's database, so a SQLite file gets :class:`antispam.review.SqliteReviewQueue` and a
PostgreSQL URL :class:`antispam.review_pg.PostgresReviewQueue`. A module of its own so the
SQLite queue's module does not import psycopg (as :mod:`antispam.feedback_stores`)."""

from __future__ import annotations

from typing import Any

from antispam.feedback import FeedbackStore
from antispam.review import ReviewQueue, SqliteReviewQueue


def review_queue_for(feedback_store: Any) -> ReviewQueue | None:
    """The queue in ``feedback_store``'s database; None for anything else (no store, a test fake)."""
    if isinstance(feedback_store, FeedbackStore):
        return SqliteReviewQueue(feedback_store)
    if type(feedback_store).__name__ == "PostgresFeedbackStore":  # psycopg imported only if in use
        from antispam.review_pg import PostgresReviewQueue

        return PostgresReviewQueue(feedback_store)
    return None
