"""The rate limiter, one set of test bodies for the in-process buckets and Redis (issue 23).

``make_limiter`` (tests/helpers/stores.py) gives :class:`antispam.keys.TokenBuckets` or
:class:`antispam.ratelimit.RedisTokenBuckets` on a real Redis (ANTISPAM_TEST_REDIS_URL, started by
.ci/run); a fake clock drives both, so the counts are exact.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable

import pytest

Maker = Callable[..., Any]


class Clock:
    def __init__(self) -> None:
        self.now = 1024.0  # and steps of 1/4 s: exact in binary, so the counts are exact too

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate(make_limiter: Maker) -> None:
    clock = Clock()
    limiter = make_limiter(clock)
    assert [limiter.take("k", 4.0) for _ in range(8)] == [0.0] * 8  # burst: 2 x rate
    wait = limiter.take("k", 4.0)
    assert wait == pytest.approx(0.25)  # one token back at 4/s
    clock.now += 0.25
    assert limiter.take("k", 4.0) == 0.0
    assert limiter.take("k", 4.0) > 0
    clock.now += 100  # refills to the capacity, not beyond
    assert sum(limiter.take("k", 4.0) == 0.0 for _ in range(20)) == 8


def test_keys_have_their_own_buckets(make_limiter: Maker) -> None:
    clock = Clock()
    limiter = make_limiter(clock)
    assert all(limiter.take("a", 1.0) == 0.0 for _ in range(2))
    assert limiter.take("a", 1.0) > 0
    assert limiter.take("b", 1.0) == 0.0  # a slow rate still gets one token at least
    assert limiter.take("c", 0.2) == 0.0 and limiter.take("c", 0.2) == pytest.approx(5.0)


def test_limiters_share_buckets_only_through_redis(make_limiter: Maker) -> None:
    """Two limiters stand for two processes: with Redis a key's burst is spent once in total."""
    clock = Clock()
    first, second = make_limiter(clock), make_limiter(clock)
    taken = sum(limiter.take("k", 10.0) == 0.0 for _ in range(20) for limiter in (first, second))
    assert taken == (20 if make_limiter.shared else 40)


def test_threads_never_take_more_than_the_bucket_holds(make_limiter: Maker) -> None:
    clock = Clock()
    limiter = make_limiter(clock)
    granted: list[int] = []

    def hammer() -> None:
        granted.append(sum(limiter.take("k", 25.0) == 0.0 for _ in range(40)))

    threads = [threading.Thread(target=hammer) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 50  # 200 attempts, capacity 2 x 25, no time passes


def test_redis_uses_its_own_clock_when_none_is_given() -> None:
    from antispam.ratelimit import RedisTokenBuckets
    from tests.helpers.stores import redis_url

    limiter = RedisTokenBuckets(redis_url(), prefix=f"antispam-test:{time.time_ns()}:")
    try:
        assert sum(limiter.take("k", 50.0) == 0.0 for _ in range(100)) in range(100, 104)
        time.sleep(0.1)  # about 5 tokens back at 50/s
        assert 3 <= sum(limiter.take("k", 50.0) == 0.0 for _ in range(20)) <= 8
    finally:
        limiter.close()


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"


def test_unreachable_redis_fails_open_to_this_process_buckets() -> None:
    pytest.importorskip("redis")
    from antispam.ratelimit import RedisTokenBuckets

    clock = Clock()
    limiter = RedisTokenBuckets(_dead_url(), fail="open", timeout_ms=50, clock=clock)
    started = time.monotonic()
    results = [limiter.take("k", 2.0) for _ in range(6)]
    assert time.monotonic() - started < 1.0
    assert results[:4] == [0.0] * 4 and all(r > 0 for r in results[4:])  # still limited, per process
    assert limiter.failures == 1 and limiter.fallbacks == 6  # one try per retry interval, not per request
    limiter.close()


def test_unreachable_redis_fails_closed_when_asked() -> None:
    pytest.importorskip("redis")
    from antispam.ratelimit import LimiterUnavailable, RedisTokenBuckets

    limiter = RedisTokenBuckets(_dead_url(), fail="closed", timeout_ms=50)
    with pytest.raises(LimiterUnavailable):
        limiter.take("k", 2.0)
    with pytest.raises(ValueError):
        RedisTokenBuckets(_dead_url(), fail="maybe")
    limiter.close()
