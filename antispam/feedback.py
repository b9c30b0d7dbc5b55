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
* **Duplicates counted, not stored twice**: the key is ``(normalized, label, key_id)`` — the
  corpus de-duplication's key plus who sent it (schema 2; the retrain merge counts distinct
  keys that agree) — so a text reported a hundred times weighs once in training
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

Two stores, one interface (issue 23): :class:`FeedbackStorage` is what the service, retrain and
``antispam feedback`` use. SQLite (:class:`FeedbackStore`, this module) is the embedded default:
the quickstart needs no server, but every process must be on the host that holds the file.
PostgreSQL (:class:`antispam.feedback_pg.PostgresFeedbackStore`) is the production store: any
replica accepts ``/feedback``. :func:`antispam.feedback_stores.open_store` picks by the setting's value: a
``postgresql://`` (or ``postgres://``) URL means PostgreSQL, anything else is a SQLite path, so
one setting (``ANTISPAM_FEEDBACK_DB`` / ``--feedback-db``) serves the service, retrain and the
operator commands alike and nothing can point them at different stores by accident.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence
from urllib.parse import urlsplit, urlunsplit

from antispam.decision_store import SQLITE_SCHEMA as _DECISIONS_SCHEMA
from antispam.decision_store import DecisionTable
from antispam.decisions import DecisionStorage
from antispam.labels import NAMES

ENV_VAR = "ANTISPAM_FEEDBACK_DB"
SCHEMA_VERSION = 2
SYNCHRONOUS_MODES = ("FULL", "NORMAL")
ANONYMOUS = "anonymous"  # the key id of feedback sent while API keys are off (and of rows from schema 1)

# Schema 2 (issue 11): one row per (normalized, label, key id), so the retrain merge can count the
# distinct keys that agree on a verdict; ``bytes`` is the UTF-8 size of ``text`` for the store cap.
_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    id            INTEGER PRIMARY KEY,
    normalized    TEXT    NOT NULL,
    label         INTEGER NOT NULL CHECK (label IN (0, 1)),
    text          TEXT    NOT NULL,   -- the first raw text reported under this key
    model_version INTEGER,            -- the version serving when it was first reported
    first_seen    REAL    NOT NULL,   -- unix time
    last_seen     REAL    NOT NULL,
    count         INTEGER NOT NULL DEFAULT 1,
    key_id        TEXT    NOT NULL DEFAULT 'anonymous',  -- who sent it (an API key id, never the key)
    bytes         INTEGER NOT NULL DEFAULT 0,
    UNIQUE (normalized, label, key_id)
);
"""
_SCHEMA = _TABLE.format(name="feedback") + """
CREATE INDEX IF NOT EXISTS feedback_normalized ON feedback (normalized);
CREATE INDEX IF NOT EXISTS feedback_key ON feedback (key_id);
CREATE INDEX IF NOT EXISTS feedback_last_seen ON feedback (last_seen);
CREATE TABLE IF NOT EXISTS feedback_quota (  -- per key id and UTC day: what /feedback accepted
    key_id TEXT    NOT NULL,
    day    TEXT    NOT NULL,
    count  INTEGER NOT NULL DEFAULT 0,
    bytes  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);
-- Issue 21: every corpus label feedback flipped or wanted to flip, as retrain's cap decided it
-- (antispam.retrain.merge_feedback). No text: the sha256 of the normalized text, and the id of
-- a feedback row that carries the verdict (for `antispam feedback approve` to show it).
CREATE TABLE IF NOT EXISTS label_flips (
    id           INTEGER PRIMARY KEY,
    digest       TEXT    NOT NULL,   -- sha256 hex of the normalized text (retrain's normalizer)
    label        INTEGER NOT NULL CHECK (label IN (0, 1)),  -- the label feedback gives
    corpus_label INTEGER NOT NULL CHECK (corpus_label IN (0, 1)),
    key_ids      TEXT    NOT NULL,   -- comma-separated key ids behind the verdict
    feedback_id  INTEGER,            -- a feedback row with this verdict
    status       TEXT    NOT NULL CHECK (status IN ('applied', 'pending', 'approved')),
    decided_at   REAL    NOT NULL,   -- unix time retrain applied or held it
    approved_by  TEXT,               -- who approved a held flip (antispam feedback approve)
    approved_at  REAL,
    UNIQUE (digest, label)
);
"""
FLIP_STATUSES = ("applied", "pending", "approved")


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


class FeedbackRefused(Exception):
    """A verdict the store will not take: ``reason`` is ``"store_full"`` or ``"quota_exceeded"``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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
    key_id: str = ANONYMOUS


@dataclass(frozen=True)
class LabelFlip:
    """One row of ``label_flips``: a corpus label feedback flipped (``applied`` within the cap,
    ``approved`` by a person) or wants to flip (``pending``: over the cap, waiting)."""

    id: int
    digest: str
    label: int
    corpus_label: int
    key_ids: tuple[str, ...]
    feedback_id: int | None
    status: str
    decided_at: float
    approved_by: str | None = None
    approved_at: float | None = None
    text: str | None = None  # the verdict's text from its feedback row, when listed for a person


@dataclass(frozen=True)
class Conflict:
    """A normalized text reported under both labels, with how often each."""

    normalized: str
    text: str
    counts: dict[str, int]  # label name -> count

    def as_dict(self) -> dict[str, Any]:
        return {"normalized": self.normalized, "text": self.text, "counts": dict(self.counts)}


class FeedbackStorage(DecisionStorage, Protocol):
    """What the service (``add``), retrain (``samples``, ``stats``, ``prune``, the flip ledger) and
    ``antispam feedback`` use; SQLite and PostgreSQL implement it with the same behaviour
    (tests/unit/test_feedback_stores.py runs the same test bodies against both).

    Errors: :class:`FeedbackError` when the store cannot be reached, opened or written (the
    service answers 503 ``feedback_unavailable``), :class:`FeedbackRefused` for the cap and quota.
    The decision log's methods (:class:`antispam.decisions.DecisionStorage`) are part of it: one
    store holds feedback and decisions."""

    location: str  # where it is, for messages and records: a path, or a URL without its password

    def add(self, text: str, normalized: str, label: int, model_version: int | None = None,
            *, now: float | None = None, key_id: str = ANONYMOUS, request_id: str | None = None,
            data_id: str | None = None) -> dict[str, Any]: ...

    def rows(self, *, key_id: str | None = None, since: float | None = None,
             until: float | None = None) -> list[FeedbackSample]: ...

    def delete(self, *, key_id: str | None = None, since: float | None = None,
               until: float | None = None) -> int: ...

    def reassign(self, to_key_id: str, *, key_id: str | None = None, since: float | None = None,
                 until: float | None = None) -> int: ...

    def prune(self, retention_days: float, *, now: float | None = None) -> int: ...

    def flips(self, *, status: str | None = None) -> list[LabelFlip]: ...

    def record_flips(self, flips: list[dict[str, Any]], *, now: float | None = None) -> int: ...

    def approve_flips(self, ids: list[int], by: str, *, now: float | None = None) -> list[int]: ...

    def samples(self, *, include_conflicts: bool = False) -> list[FeedbackSample]: ...

    def conflicts(self) -> list[Conflict]: ...

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...


def check_verdict(text: str, normalized: str, label: int) -> None:
    """The checks every store makes before writing (one place, so the stores cannot drift)."""
    if not isinstance(text, str) or not isinstance(normalized, str):
        raise TypeError("text and normalized must be str")
    if not normalized.strip():
        raise ValueError("normalized text is empty")
    if isinstance(label, bool) or label not in NAMES:
        raise ValueError(f"label must be one of {sorted(NAMES)}, got {label!r}")


def masked(text: str, normalized: str, mask_contacts: bool) -> tuple[str, str]:
    """The text and its normalized form as stored: with phone numbers and ids masked when the
    store is set to (issue 21: they never reach the disk)."""
    if not mask_contacts:
        return text, normalized
    from antispam.privacy import mask_contacts as mask
    from antispam.text import normalize

    text = mask(text)
    return text, normalize(text)



def samples_from_rows(rows: Iterable[Sequence[Any]]) -> list[FeedbackSample]:
    """Rows of (id, text, normalized, label, count, model_version, first_seen, last_seen, key_id),
    as both stores select them, as samples."""
    return [FeedbackSample(int(r[0]), r[1], r[2], int(r[3]), int(r[4]),
                           None if r[5] is None else int(r[5]), float(r[6]), float(r[7]), str(r[8]))
            for r in rows]


def conflicts_from_rows(rows: Iterable[Sequence[Any]]) -> list[Conflict]:
    """Rows of (normalized, label, count, text) of texts reported under both labels, oldest first,
    folded into one :class:`Conflict` per text with the counts summed over key ids."""
    found: dict[str, Conflict] = {}
    for normalized, label, count, text in rows:
        entry = found.setdefault(normalized, Conflict(normalized, text, {}))
        name = NAMES[int(label)]
        entry.counts[name] = entry.counts.get(name, 0) + int(count)
    return list(found.values())

class FeedbackStore(DecisionTable):
    """Durable, de-duplicating store of labeled texts; see the module docstring for the choices.
    The decision log's table is in the same file (:class:`antispam.decision_store.DecisionTable`)."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL",
                 busy_timeout_ms: int = 10_000, max_rows: int = 0, max_bytes: int = 0,
                 daily_count: int = 0, daily_bytes: int = 0, mask_contacts: bool = False) -> None:
        """``max_rows``/``max_bytes``: the store's cap (rows, UTF-8 bytes of texts); ``daily_count``/
        ``daily_bytes``: what one key id may add per UTC day. 0: no limit. ``mask_contacts``: store
        texts with phone numbers and ids masked (:func:`antispam.privacy.mask_contacts`)."""
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        self.path = Path(path)
        self.location = str(self.path)
        self.synchronous = synchronous.upper()
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.max_rows, self.max_bytes = int(max_rows), int(max_bytes)
        self.daily_count, self.daily_bytes = int(daily_count), int(daily_bytes)
        self.mask_contacts = bool(mask_contacts)
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
            _migrate(conn)
            conn.executescript(_SCHEMA)
            conn.executescript(_DECISIONS_SCHEMA)
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
            *, now: float | None = None, key_id: str = ANONYMOUS, request_id: str | None = None,
            data_id: str | None = None) -> dict[str, Any]:
        """Record one verdict; return ``{"id", "duplicate", "count", "conflict"}``.

        ``normalized`` comes from :func:`antispam.text.normalize` in the caller (the one text
        pipeline); an empty one is refused because it can never be a training sample.
        When this returns, the row is committed (and, with synchronous=FULL, on disk).
        ``key_id`` is who sent it; the store cap and the key's daily quota raise
        :class:`FeedbackRefused` before anything is written.
        """
        check_verdict(text, normalized, label)  # bad input before touching the store
        with self._transaction() as conn:
            return self.add_in(conn, text, normalized, label, model_version, now=now, key_id=key_id,
                               request_id=request_id, data_id=data_id)

    def add_in(self, conn: sqlite3.Connection, text: str, normalized: str, label: int,
               model_version: int | None = None, *, now: float | None = None, key_id: str = ANONYMOUS,
               request_id: str | None = None, data_id: str | None = None) -> dict[str, Any]:
        """:meth:`add` inside a write transaction the caller holds (issue 23: a moderator's queue
        decision and its feedback row commit together, :mod:`antispam.review`)."""
        check_verdict(text, normalized, label)
        if model_version is not None:
            model_version = int(model_version)
        text, normalized = masked(text, normalized, self.mask_contacts)
        stamp = time.time() if now is None else float(now)
        size = len(text.encode("utf-8", "surrogatepass"))
        day = time.strftime("%Y-%m-%d", time.gmtime(stamp))
        self._check_limits(conn, key_id, day, size)
        conn.execute(
            "INSERT INTO feedback_quota (key_id, day, count, bytes) VALUES (?, ?, 1, ?) "
            "ON CONFLICT (key_id, day) DO UPDATE SET count = count + 1, "
            "bytes = bytes + excluded.bytes", (key_id, day, size))
        row = conn.execute(
            "SELECT id, count FROM feedback WHERE normalized = ? AND label = ? AND key_id = ?",
            (normalized, label, key_id)).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO feedback (normalized, label, text, model_version, "
                "first_seen, last_seen, count, key_id, bytes, request_id, data_id) "
                "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
                (normalized, label, text, model_version, stamp, stamp, key_id, size,
                 request_id, data_id))
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
        return {"id": row_id, "duplicate": duplicate, "count": count, "conflict": conflict}

    def _check_limits(self, conn: sqlite3.Connection, key_id: str, day: str, size: int) -> None:
        if self.daily_count or self.daily_bytes:
            used = conn.execute("SELECT count, bytes FROM feedback_quota WHERE key_id = ? AND day = ?",
                                (key_id, day)).fetchone() or (0, 0)
            if (self.daily_count and used[0] + 1 > self.daily_count) or \
                    (self.daily_bytes and used[1] + size > self.daily_bytes):
                raise FeedbackRefused("quota_exceeded", f"key {key_id!r} has used its feedback quota for "
                                      f"{day} (UTC): {used[0]} verdicts, {used[1]} bytes; the limits are "
                                      f"{self.daily_count or 'none'} and {self.daily_bytes or 'none'}")
        if self.max_rows or self.max_bytes:
            rows, total = conn.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM feedback").fetchone()
            if (self.max_rows and rows + 1 > self.max_rows) or (self.max_bytes and total + size > self.max_bytes):
                raise FeedbackRefused("store_full", "the feedback store is full; an operator must prune "
                                      "it (antispam feedback delete) or the retention must run")

    # -- operator: list, export, delete, retention (``antispam feedback``) ----------------------------

    @staticmethod
    def _where(key_id: str | None, since: float | None, until: float | None) -> tuple[str, tuple[Any, ...]]:
        parts: list[str] = []
        params: list[Any] = []
        if key_id is not None:
            parts.append("key_id = ?")
            params.append(key_id)
        if since is not None:
            parts.append("last_seen >= ?")
            params.append(since)
        if until is not None:
            parts.append("first_seen < ?")
            params.append(until)
        return (" WHERE " + " AND ".join(parts)) if parts else "", tuple(params)

    def rows(self, *, key_id: str | None = None, since: float | None = None,
             until: float | None = None) -> list[FeedbackSample]:
        """Rows of one key id and/or a time range (unix seconds; a row is in if it was seen in it)."""
        where, params = self._where(key_id, since, until)
        return self._samples(where, params)

    def delete(self, *, key_id: str | None = None, since: float | None = None,
               until: float | None = None) -> int:
        """Delete the rows :meth:`rows` lists with the same arguments; how many went."""
        if key_id is None and since is None and until is None:
            raise ValueError("delete needs a key id or a time range")
        where, params = self._where(key_id, since, until)
        return self._write(f"DELETE FROM feedback{where}", params, drop_orphan_flips=True)

    def reassign(self, to_key_id: str, *, key_id: str | None = None, since: float | None = None,
                 until: float | None = None) -> int:
        """Record rows as sent by ``to_key_id`` (an operator vouching for them, e.g. rows a
        moderator sent before schema 2 recorded senders, now ``anonymous``); how many moved.
        A row whose text and label ``to_key_id`` already has stays where it is."""
        if key_id is None and since is None and until is None:
            raise ValueError("reassign needs a key id or a time range")
        where, params = self._where(key_id, since, until)
        return self._write(f"UPDATE OR IGNORE feedback SET key_id = ?{where}", (to_key_id, *params))

    def prune(self, retention_days: float, *, now: float | None = None) -> int:
        """Delete rows last seen more than ``retention_days`` ago (0: keep all), and old quota days."""
        if retention_days <= 0:
            return 0
        cutoff = (time.time() if now is None else now) - retention_days * 86400
        deleted = self._write("DELETE FROM feedback WHERE last_seen < ?", (cutoff,), drop_orphan_flips=True)
        self._write("DELETE FROM feedback_quota WHERE day < ?",
                    (time.strftime("%Y-%m-%d", time.gmtime(cutoff)),))
        return deleted

    # -- label flips (issue 21: capped per night and per key; the rest wait for a person) --------

    def flips(self, *, status: str | None = None) -> list[LabelFlip]:
        """The ``label_flips`` ledger (oldest first), with each verdict's text where its feedback
        row still exists."""
        where, params = ("WHERE f.status = ?", (status,)) if status else ("", ())
        rows = self._query(
            "SELECT f.id, f.digest, f.label, f.corpus_label, f.key_ids, f.feedback_id, f.status, "
            "f.decided_at, f.approved_by, f.approved_at, b.text FROM label_flips f "
            f"LEFT JOIN feedback b ON b.id = f.feedback_id {where} ORDER BY f.id", params)
        return [LabelFlip(int(r[0]), r[1], int(r[2]), int(r[3]), tuple(k for k in r[4].split(",") if k),
                          None if r[5] is None else int(r[5]), r[6], float(r[7]), r[8],
                          None if r[9] is None else float(r[9]), r[10]) for r in rows]

    def record_flips(self, flips: list[dict[str, Any]], *, now: float | None = None) -> int:
        """Add retrain's new flip decisions (``digest``, ``label``, ``corpus_label``, ``key_ids``,
        ``feedback_id``, ``status`` of ``applied``/``pending``); one already recorded keeps its
        first decision. How many were added."""
        stamp = time.time() if now is None else float(now)
        added = 0
        with self._transaction() as conn:
            for flip in flips:
                if flip["status"] not in ("applied", "pending"):
                    raise ValueError(f"a new flip is applied or pending, got {flip['status']!r}")
                cur = conn.execute(
                    "INSERT OR IGNORE INTO label_flips (digest, label, corpus_label, key_ids, feedback_id, "
                    "status, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (flip["digest"], int(flip["label"]), int(flip["corpus_label"]), ",".join(flip["key_ids"]),
                     flip.get("feedback_id"), flip["status"], stamp))
                added += cur.rowcount
        return added

    def approve_flips(self, ids: list[int], by: str, *, now: float | None = None) -> list[int]:
        """Mark pending flips approved by ``by`` (a person) now; the ids that were not pending
        (unknown, already applied or approved) are returned and nothing is done for them."""
        if not by.strip():
            raise ValueError("an approval names who approves")
        stamp = time.time() if now is None else float(now)
        refused = []
        with self._transaction() as conn:
            for flip_id in ids:
                cur = conn.execute("UPDATE label_flips SET status = 'approved', approved_by = ?, "
                                   "approved_at = ? WHERE id = ? AND status = 'pending'",
                                   (by.strip(), stamp, int(flip_id)))
                if cur.rowcount == 0:
                    refused.append(flip_id)
        return refused

    def _drop_orphan_flips(self, conn: sqlite3.Connection) -> None:
        """Ledger rows whose feedback row is gone (deleted, past retention) go too: a verdict no
        longer stored flips nothing, and if it is sent again the cap decides again."""
        conn.execute("DELETE FROM label_flips WHERE feedback_id IS NULL OR feedback_id NOT IN "
                     "(SELECT id FROM feedback)")

    def _write(self, sql: str, params: tuple[Any, ...], *, drop_orphan_flips: bool = False) -> int:
        with self._transaction() as conn:
            count = conn.execute(sql, params).rowcount
            if drop_orphan_flips:
                self._drop_orphan_flips(conn)
        return int(count)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the process lock: ``BEGIN IMMEDIATE`` takes SQLite's write
        lock up front (waiting up to the busy timeout), COMMIT on success, ROLLBACK on any error;
        SQLite errors become :class:`FeedbackError`, others (FeedbackRefused) pass through."""
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise FeedbackError(f"cannot write to feedback store {self.path}: {exc}") from exc

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
        return self._samples(where)

    def _samples(self, where: str, params: tuple[Any, ...] = ()) -> list[FeedbackSample]:
        rows = self._query(
            "SELECT id, text, normalized, label, count, model_version, first_seen, last_seen, key_id "
            f"FROM feedback {where} ORDER BY id", params)
        return samples_from_rows(rows)

    def conflicts(self) -> list[Conflict]:
        """Normalized texts reported under both labels, oldest first."""
        rows = self._query(
            "SELECT normalized, label, count, text FROM feedback WHERE normalized IN ("
            "SELECT normalized FROM feedback GROUP BY normalized HAVING COUNT(DISTINCT label) > 1"
            ") ORDER BY id")
        return conflicts_from_rows(rows)

    def stats(self) -> dict[str, int]:
        """Counts for the promotion log and ``GET /models``-style reports."""
        row = self._query(
            "SELECT COUNT(*), COALESCE(SUM(count), 0), "
            "COALESCE(SUM(CASE WHEN label = 0 THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN label = 1 THEN 1 ELSE 0 END), 0) FROM feedback")[0]
        keys = self._query("SELECT COUNT(DISTINCT key_id), COALESCE(SUM(bytes), 0) FROM feedback")[0]
        return {"distinct": int(row[0]), "reports": int(row[1]), "spam": int(row[2]),
                "pass": int(row[3]), "conflicting_texts": len(self.conflicts()),
                "key_ids": int(keys[0]), "bytes": int(keys[1])}

    def integrity_check(self) -> str:
        """SQLite's own verdict on the file ("ok" when sound)."""
        return str(self._query("PRAGMA integrity_check")[0][0])


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a schema-1 file (one row per (normalized, label), no sender) to schema 2 in one
    transaction: the table is rebuilt with ``key_id`` (old rows: ``anonymous`` — nobody vouches
    for them, so they count as one untrusted key) and ``bytes``. Safe against a concurrent
    opener: the check runs again under the write lock."""
    def needed() -> bool:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(feedback)").fetchall()]
        return bool(columns) and "key_id" not in columns

    if not needed():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if needed():
            conn.execute("DROP TABLE IF EXISTS feedback_v2")
            conn.execute(_TABLE.format(name="feedback_v2"))
            conn.execute(
                "INSERT INTO feedback_v2 (id, normalized, label, text, model_version, first_seen, last_seen, "
                "count, key_id, bytes) SELECT id, normalized, label, text, model_version, first_seen, "
                "last_seen, count, ?, length(CAST(text AS BLOB)) FROM feedback", (ANONYMOUS,))
            conn.execute("DROP TABLE feedback")
            conn.execute("ALTER TABLE feedback_v2 RENAME TO feedback")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres(target: str) -> bool:
    """Whether a ``--feedback-db`` value names a PostgreSQL database (a URL) rather than a file."""
    return urlsplit(target.strip()).scheme.lower() in POSTGRES_SCHEMES


def redact(target: str) -> str:
    """The value as it may be printed or logged: a URL's password replaced by ``***``."""
    if not is_postgres(target):
        return target
    parts = urlsplit(target)
    if parts.password is None:
        return target
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def default_path(environ: dict[str, str] | None = None, fallback: str = "feedback.db") -> str:
    """``$ANTISPAM_FEEDBACK_DB`` or the fallback, for commands that take ``--feedback-db``."""
    env = os.environ if environ is None else environ
    return env.get(ENV_VAR) or fallback
