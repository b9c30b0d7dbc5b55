"""Per-key rate limits shared by every process and replica, in Redis (issue 23).

The in-process :class:`antispam.keys.TokenBuckets` stays the default: it needs nothing, but each
process has its own buckets, so a key's real limit is its rate × workers × replicas. With
``ANTISPAM_REDIS_URL`` set, :class:`RedisTokenBuckets` keeps one bucket per key id in Redis, and
the limit holds in total (tests/e2e/test_shared_stores.py: two ``serve`` processes).

* **One round trip, atomic**: the whole bucket step (refill by elapsed time, take a token or say
  how long to wait, store, expire) is one Lua script (:data:`TOKEN_BUCKET`, loaded once with
  ``register_script``, then called by its SHA). Redis runs a script without interleaving
  another client's commands, so two processes can never both take the last token.
* **Redis's clock**: the script reads ``TIME`` on the server, so processes whose clocks differ
  still refill the same bucket at the same rate (a bucket never refills backwards either).
* **Same bucket as in process**: capacity ``BURST_FACTOR × rate`` (at least 1), full at first use,
  keys expire once a bucket would be full again (idle keys cost no memory).
* **When Redis cannot answer** (down, timeout after ``timeout_ms``), ``fail`` decides:

  - ``open`` (the default): the request is limited by this process's own buckets, i.e. exactly
    the limits before Redis (rate × processes), and Redis is tried again after
    :data:`RETRY_SECONDS`, so an outage costs one timeout per process per interval, not one per
    request. Why the default: the limiter protects capacity and fairness, not access — keys
    are still checked against the keys file — and a Redis outage should not turn every keyed
    route into an error. The limit is looser during the outage, never absent.
  - ``closed``: :class:`LimiterUnavailable`, which the service answers with 503
    ``rate_limiter_unavailable``: for an operator whose rate is a contract (a paid quota) and
    who prefers refusing to over-serving.

The call is synchronous, on the event loop (``BaseHandler.authorize``): on loopback or in one
data centre a script call is a fraction of a millisecond, and the timeout bounds the worst case.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Protocol

from antispam.keys import BURST_FACTOR, TokenBuckets

log = logging.getLogger(__name__)

FAIL_MODES = ("open", "closed")
RETRY_SECONDS = 1.0  # after a failure, how long Redis is left alone (fail mode in the meantime)


def redis_client(url: str, fail: str, timeout_ms: float) -> tuple[Any, tuple[type[BaseException], ...]]:
    """A Redis client for a shared counter (this limiter, the campaign tracker) and the errors
    that mean "Redis did not answer": one place for the settings both read (``ANTISPAM_REDIS_URL``,
    ``ANTISPAM_REDIS_FAIL``, ``ANTISPAM_REDIS_TIMEOUT_MS``) and for the message when redis-py is
    missing. Connecting is lazy: a Redis that is down fails the first call, not this one."""
    try:
        import redis
    except ModuleNotFoundError:
        raise ValueError("ANTISPAM_REDIS_URL is set but redis-py is not installed: "
                         "pip install 'antispam[redis]'") from None
    if fail not in FAIL_MODES:
        raise ValueError(f"fail must be one of {', '.join(FAIL_MODES)}, got {fail!r}")
    timeout = timeout_ms / 1000
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                  health_check_interval=30)
    return client, (redis.RedisError, OSError)
PREFIX = "antispam:bucket:"

# KEYS[1]: the bucket; ARGV: rate per second, capacity, now (seconds; empty: Redis's TIME).
# Returns the seconds until a token is back as a string ("0" = taken): a Lua number would be
# truncated to an integer in the reply.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[3])
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
  ts = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return string.format('%.17g', wait)
"""


class RateLimiter(Protocol):
    """What ``BaseHandler.authorize`` asks: 0.0 if a request of ``key_id`` may go now, else the
    seconds until it may (the 429's Retry-After)."""

    def take(self, key_id: str, rate: float) -> float: ...


class LimiterUnavailable(Exception):
    """The shared limiter cannot answer and fails closed (the service: 503)."""


class RedisTokenBuckets:
    """Token buckets in Redis; see the module docstring. ``clock``: seconds to pass to the script
    instead of Redis's own TIME (tests); ``fallback``: the buckets used while failing open."""

    def __init__(self, url: str, *, fail: str = "open", timeout_ms: float = 100.0, prefix: str = PREFIX,
                 clock: Callable[[], float] | None = None, fallback: TokenBuckets | None = None,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        self._client, self._errors = redis_client(url, fail, timeout_ms)
        self.fail = fail
        self.prefix = prefix
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._fallback = fallback or TokenBuckets()
        self._script: Any = self._client.register_script(TOKEN_BUCKET)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.failures = 0  # calls Redis could not answer
        self.fallbacks = 0  # requests limited by the fallback (fail open) or refused (closed)

    def take(self, key_id: str, rate: float) -> float:
        capacity = max(1.0, BURST_FACTOR * rate)
        if time.monotonic() >= self._down_until:
            now = "" if self._clock is None else repr(float(self._clock()))
            try:
                reply = self._script(keys=[self.prefix + key_id], args=[repr(float(rate)), repr(capacity), now])
                return float(reply)
            except self._errors as exc:
                with self._lock:
                    self.failures += 1
                    first = time.monotonic() >= self._down_until
                    self._down_until = time.monotonic() + self.retry_seconds
                if first:
                    log.warning("the rate limiter cannot reach Redis (%s: %s); failing %s for %.0f s",
                                type(exc).__name__, exc, self.fail, self.retry_seconds)
        self.fallbacks += 1
        if self.fail == "closed":
            raise LimiterUnavailable("the shared rate limiter (Redis) is unreachable and fails closed")
        return self._fallback.take(key_id, rate)

    def close(self) -> None:
        self._client.close()


def make_limiter(redis_url: str, fail: str = "open", timeout_ms: float = 100.0) -> RateLimiter:
    """The service's limiter: Redis when a URL is set, else this process's own buckets."""
    if not redis_url:
        return TokenBuckets()
    return RedisTokenBuckets(redis_url, fail=fail, timeout_ms=timeout_ms)
