"""The feedback store: moderators' verdicts (``POST /feedback``) kept for the nightly retrain.

SQLite, because the data is small (one row per distinct text and label), written one row at a
time from the service and read in one go by the retrain job, possibly by several processes
(``serve --workers N``) at once. Choices and why:

* **WAL mode**: readers (the retrain job) never block the writer (the service) and vice versa,
  and a commit is one append to the ``-wal`` file, which a crash cannot leave half-applied: on
  the next open SQLite ignores a trailing frame whose checksum does not match.
* **synchronous=FULL**: in WAL mode, NORMAL already survives a killed process (the OS still has
  the pages), but may lose the last commits on power loss or a kernel crash; FULL fsyncs the WAL
  at every commit so a 202 really means "stored". Feedback arrives at human speed (a moderator
  clicking), so one fsync per row costs nothing that matters. ``synchronous="NORMAL"`` is
  available for bulk imports.
* **Duplicates counted, not stored twice**: the key is ``(normalized, label)`` — the same key
  the corpus de-duplication uses — so a text reported a hundred times weighs once in training
  and the table does not grow with repeats. ``count`` and ``last_seen`` keep the history.
* **Conflicts kept and flagged**: a text reported as spam and later as pass has two rows. Both
  are kept (neither moderator is silently overruled); :meth:`FeedbackStore.conflicts` lists them
  for the retrain report, and :meth:`FeedbackStore.samples` leaves them out of training by
  default, as :func:`antispam.data.dedupe` does for the corpus.
* **Lazy**: opening the store touches nothing; the file, its folder and the table appear on the
  first call, so ``serve`` starts even where the feedback path is not writable yet, and the
  error then surfaces as a 503 on ``POST /feedback`` instead of a failed start.

Thread safety: one connection per store, guarded by a lock; the app calls :meth:`add` from an
executor thread. Several processes may share the file: SQLite's own locking serializes writers,
``busy_timeout`` makes them wait instead of failing, and ``BEGIN IMMEDIATE`` takes the write lock
up front so two writers cannot deadlock upgrading read locks.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antispam.labels import NAMES

ENV_VAR = "ANTISPAM_FEEDBACK_DB"
SCHEMA_VERSION = 1
SYNCHRONOUS_MODES = ("FULL", "NORMAL")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id            INTEGER PRIMARY KEY,
    normalized    TEXT    NOT NULL,
    label         INTEGER NOT NULL CHECK (label IN (0, 1)),
    text          TEXT    NOT NULL,   -- the first raw text reported under this key
    model_version INTEGER,            -- the version serving when it was first reported
    first_seen    REAL    NOT NULL,   -- unix time
    last_seen     REAL    NOT NULL,
    count         INTEGER NOT NULL DEFAULT 1,
    UNIQUE (normalized, label)
);
CREATE INDEX IF NOT EXISTS feedback_normalized ON feedback (normalized);
"""


# Columns added after the first schema, with their types. A file made before them gains them
# on open (ALTER TABLE ADD COLUMN; old rows read NULL), so no migration step is needed.
# request_id / data_id: the /predict answer and the client's text id this feedback disputes
# (docs/contracts.md#request-ids); the latest report's values are kept.
_ADDED_COLUMNS = {"request_id": "TEXT", "data_id": "TEXT"}


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    present = {row[1] for row in conn.execute("PRAGMA table_info(feedback)")}
    for name, kind in _ADDED_COLUMNS.items():
        if name not in present:
            try:
                conn.execute(f"ALTER TABLE feedback ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise


class FeedbackError(Exception):
    """The store cannot be opened or written (bad path, disk full, corrupt file)."""


@dataclass(frozen=True)
class FeedbackSample:
    """One distinct (normalized text, label) pair as the retrain job reads it."""

    id: int
    text: str
    normalized: str
    label: int
    count: int
    model_version: int | None
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class Conflict:
    """A normalized text reported under both labels, with how often each."""

    normalized: str
    text: str
    counts: dict[str, int]  # label name -> count

    def as_dict(self) -> dict[str, Any]:
        return {"normalized": self.normalized, "text": self.text, "counts": dict(self.counts)}


class FeedbackStore:
    """Durable, de-duplicating store of labeled texts; see the module docstring for the choices."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL",
                 busy_timeout_ms: int = 10_000) -> None:
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # -- connection -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """Open on first use; the caller holds the lock.

        Two processes opening a brand-new file at once can both ask for WAL mode; SQLite answers
        one of them SQLITE_BUSY at once, without calling the busy handler (the journal-mode switch
        needs an exclusive lock it will not wait for). So the whole open is retried until the busy
        timeout runs out, instead of failing the first request of a freshly started worker.
        """
        if self._conn is not None:
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FeedbackError(f"cannot create feedback store folder {self.path.parent}: {exc}") from exc
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        delay = 0.01
        while True:
            try:
                conn = self._open()
                break
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() + delay > deadline:
                    raise FeedbackError(f"cannot open feedback store {self.path}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
            except sqlite3.Error as exc:
                raise FeedbackError(f"cannot open feedback store {self.path}: {exc}") from exc
        self._conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        """One attempt at opening the file in WAL mode with the schema in place."""
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
        # what the code says and nothing is left open between calls.
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_ms / 1000,
                               isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise FeedbackError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); "
                                    "is it on a network filesystem?")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.executescript(_SCHEMA)
            _add_missing_columns(conn)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "FeedbackStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------------

    def add(self, text: str, normalized: str, label: int, model_version: int | None = None,
            *, now: float | None = None, request_id: str | None = None,
            data_id: str | None = None) -> dict[str, Any]:
        """Record one verdict; return ``{"id", "duplicate", "count", "conflict"}``.

        ``normalized`` comes from :func:`antispam.text.normalize` in the caller (the one text
        pipeline); an empty one is refused because it can never be a training sample.
        When this returns, the row is committed (and, with synchronous=FULL, on disk).
        """
        if not isinstance(text, str) or not isinstance(normalized, str):
            raise TypeError("text and normalized must be str")
        if not normalized.strip():
            raise ValueError("normalized text is empty")
        if isinstance(label, bool) or label not in NAMES:
            raise ValueError(f"label must be one of {sorted(NAMES)}, got {label!r}")
        if model_version is not None:
            model_version = int(model_version)
        stamp = time.time() if now is None else float(now)
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute(
                        "SELECT id, count FROM feedback WHERE normalized = ? AND label = ?",
                        (normalized, label)).fetchone()
                    if row is None:
                        cur = conn.execute(
                            "INSERT INTO feedback (normalized, label, text, model_version, "
                            "first_seen, last_seen, count, request_id, data_id) "
                            "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                            (normalized, label, text, model_version, stamp, stamp, request_id, data_id))
                        assert cur.lastrowid is not None  # an INSERT always sets it
                        row_id, count, duplicate = cur.lastrowid, 1, False
                    else:
                        row_id, count, duplicate = int(row[0]), int(row[1]) + 1, True
                        conn.execute("UPDATE feedback SET count = ?, last_seen = ?, "
                                     "request_id = coalesce(?, request_id), "
                                     "data_id = coalesce(?, data_id) WHERE id = ?",
                                     (count, stamp, request_id, data_id, row_id))
                    conflict = conn.execute(
                        "SELECT 1 FROM feedback WHERE normalized = ? AND label != ? LIMIT 1",
                        (normalized, label)).fetchone() is not None
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise FeedbackError(f"cannot write to feedback store {self.path}: {exc}") from exc
        return {"id": row_id, "duplicate": duplicate, "count": count, "conflict": conflict}

    # -- reading (the retrain job) ----------------------------------------------------------------

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._connect()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise FeedbackError(f"cannot read feedback store {self.path}: {exc}") from exc

    def samples(self, *, include_conflicts: bool = False) -> list[FeedbackSample]:
        """Distinct verdicts in arrival order; texts carrying both labels are left out unless asked."""
        where = "" if include_conflicts else (
            "WHERE normalized NOT IN (SELECT normalized FROM feedback GROUP BY normalized "
            "HAVING COUNT(DISTINCT label) > 1)")
        rows = self._query(
            "SELECT id, text, normalized, label, count, model_version, first_seen, last_seen "
            f"FROM feedback {where} ORDER BY id")
        return [FeedbackSample(int(r[0]), r[1], r[2], int(r[3]), int(r[4]),
                               None if r[5] is None else int(r[5]), float(r[6]), float(r[7]))
                for r in rows]

    def conflicts(self) -> list[Conflict]:
        """Normalized texts reported under both labels, oldest first."""
        rows = self._query(
            "SELECT normalized, label, count, text FROM feedback WHERE normalized IN ("
            "SELECT normalized FROM feedback GROUP BY normalized HAVING COUNT(DISTINCT label) > 1"
            ") ORDER BY id")
        found: dict[str, Conflict] = {}
        for normalized, label, count, text in rows:
            entry = found.setdefault(normalized, Conflict(normalized, text, {}))
            entry.counts[NAMES[int(label)]] = int(count)
        return list(found.values())

    def stats(self) -> dict[str, int]:
        """Counts for the promotion log and ``GET /models``-style reports."""
        row = self._query(
            "SELECT COUNT(*), COALESCE(SUM(count), 0), "
            "COALESCE(SUM(CASE WHEN label = 0 THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN label = 1 THEN 1 ELSE 0 END), 0) FROM feedback")[0]
        return {"distinct": int(row[0]), "reports": int(row[1]), "spam": int(row[2]),
                "pass": int(row[3]), "conflicting_texts": len(self.conflicts())}

    def integrity_check(self) -> str:
        """SQLite's own verdict on the file ("ok" when sound)."""
        return str(self._query("PRAGMA integrity_check")[0][0])


def default_path(environ: dict[str, str] | None = None, fallback: str = "feedback.db") -> str:
    """``$ANTISPAM_FEEDBACK_DB`` or the fallback, for commands that take ``--feedback-db``."""
    env = os.environ if environ is None else environ
    return env.get(ENV_VAR) or fallback
