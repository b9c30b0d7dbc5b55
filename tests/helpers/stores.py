"""Fixtures that run one test body against every store and limiter (issue 23).

``feedback_db``: a ``--feedback-db`` value, once a SQLite file and once a PostgreSQL URL whose
``search_path`` is a fresh schema (dropped afterwards), so tests never see each other's rows.
``make_limiter``: a factory of rate limiters, once the in-process :class:`TokenBuckets` and once
:class:`RedisTokenBuckets` on a fresh key prefix.

The servers are real: .ci/run starts PostgreSQL and Redis from Debian packages on loopback
(.ci/services.sh) and exports ``ANTISPAM_TEST_POSTGRES_URL`` / ``ANTISPAM_TEST_REDIS_URL``.
Without them the PostgreSQL/Redis parameters skip, naming the variable; in CI they are set.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

import pytest

POSTGRES_ENV = "ANTISPAM_TEST_POSTGRES_URL"
REDIS_ENV = "ANTISPAM_TEST_REDIS_URL"


def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL server for this run (.ci/run starts one)")
    return url


def redis_url() -> str:
    url = os.environ.get(REDIS_ENV, "")
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set: no Redis server for this run (.ci/run starts one)")
    return url


def fresh_schema(base_url: str) -> tuple[str, Callable[[], None]]:
    """A URL whose connections use a new, empty schema, and a function that drops it."""
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base_url else "?"
    url = f"{base_url}{sep}options={quote(f'-csearch_path={schema}')}"

    def drop() -> None:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    return url, drop


@pytest.fixture(params=["sqlite", "postgres"])
def feedback_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A ``--feedback-db`` value naming an empty store: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "feedback.db")
        return
    url, drop = fresh_schema(postgres_url())
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def open_feedback(feedback_db: str) -> Iterator[Callable[..., Any]]:
    """``open_feedback(**options)``: a store on ``feedback_db`` (closed after the test)."""
    from antispam.feedback_stores import open_store

    opened: list[Any] = []

    def make(**options: Any) -> Any:
        store = open_store(feedback_db, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``make_limiter(clock=None, **options)``: an in-process or a Redis rate limiter; limiters
    made in one test share their state the way processes sharing a Redis would (Redis), or not
    at all (in-process: each is its own process's buckets)."""
    from antispam.keys import TokenBuckets

    if request.param == "memory":
        def memory(clock: Callable[[], float] | None = None, **_options: Any) -> Any:
            return TokenBuckets() if clock is None else TokenBuckets(clock)

        memory.shared = False  # type: ignore[attr-defined]
        yield memory
        return
    from antispam.ratelimit import RedisTokenBuckets

    url = redis_url()
    prefix = f"antispam-test:{uuid.uuid4().hex[:12]}:"
    made: list[Any] = []

    def redis(clock: Callable[[], float] | None = None, **options: Any) -> Any:
        limiter = RedisTokenBuckets(url, prefix=prefix, clock=clock, **options)
        made.append(limiter)
        return limiter

    redis.shared = True  # type: ignore[attr-defined]
    yield redis
    for limiter in made:
        limiter.close()


@pytest.fixture(params=["memory", "redis"])
def make_tracker(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``make_tracker(window_seconds=..., min_senders=..., **options)``: an in-process or a Redis
    campaign tracker (issue 24); trackers made in one test share their counts the way processes
    sharing a Redis would (Redis, on a fresh key prefix), or not at all (in-process)."""
    from antispam.campaigns import MemoryTracker

    if request.param == "memory":
        def memory(window_seconds: float = 600.0, min_senders: int = 3, **options: Any) -> Any:
            return MemoryTracker(window_seconds, min_senders, **options)

        memory.shared = False  # type: ignore[attr-defined]
        yield memory
        return
    from antispam.campaigns import RedisTracker

    url = redis_url()
    prefix = f"antispam-test:{uuid.uuid4().hex[:12]}:"
    made: list[Any] = []

    def redis(window_seconds: float = 600.0, min_senders: int = 3, **options: Any) -> Any:
        options.pop("max_counters", None)
        options.pop("max_senders", None)
        tracker = RedisTracker(url, window_seconds, min_senders, prefix=prefix, **options)
        made.append(tracker)
        return tracker

    redis.shared = True  # type: ignore[attr-defined]
    yield redis
    for tracker in made:
        tracker.close()
