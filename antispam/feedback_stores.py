"""Which feedback store a ``--feedback-db`` value names (issue 23): a SQLite file
(:mod:`antispam.feedback`) or a PostgreSQL database (:mod:`antispam.feedback_pg`).

A module of its own so that neither store imports the other: the PostgreSQL store builds on the
SQLite module's types and checks, and this one picks between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from antispam.feedback import FeedbackError, FeedbackStorage, FeedbackStore, is_postgres, redact


def exists(target: str) -> bool:
    """Whether there may be feedback to read: a SQLite file on disk, or any PostgreSQL URL (the
    database is created by its operator; the tables appear on first use)."""
    return bool(target) and (is_postgres(target) or Path(target).is_file())


def open_store(target: str, **options: Any) -> FeedbackStorage:
    """The store a ``--feedback-db`` value names: PostgreSQL for a ``postgresql://`` URL, else a
    SQLite file. ``options`` are the caps, quotas and ``mask_contacts`` both stores take
    (``synchronous`` and ``busy_timeout_ms`` are SQLite's own and ignored for PostgreSQL).
    Opening touches nothing: the first call connects."""
    if is_postgres(target):
        try:
            from antispam.feedback_pg import PostgresFeedbackStore
        except ModuleNotFoundError as exc:
            if exc.name not in ("psycopg", "psycopg_pool"):
                raise
            raise FeedbackError(f"{redact(target)} is a PostgreSQL URL but {exc.name} is not installed: "
                                "pip install 'antispam[postgres]'") from None
        options.pop("synchronous", None)
        options.pop("busy_timeout_ms", None)
        return PostgresFeedbackStore(target, **options)
    return FeedbackStore(target, **options)
