"""Campaign detection (issue 24, docs/contracts.md#campaigns): one ad, lightly varied, sent by
many senders within minutes. Each observed text is filed under its near-duplicate cluster (by
its signature keys, :mod:`antispam.signatures`) and under each contact it carries
(:mod:`antispam.contacts`); each of those *counters* keeps, per sliding window, how many texts
it saw (``size``) and how many distinct senders sent them (``senders``). A text whose counter
has at least ``min_senders`` distinct senders in the window gets campaign evidence.

The :class:`CampaignTracker` protocol has two implementations with the same semantics (one set of
test bodies runs against both, tests/unit/test_campaigns.py):

* :class:`MemoryTracker`, the embedded default: this process's counts, bounded memory (at most
  ``max_counters`` counters, least recently used dropped first, and ``max_senders`` senders per
  counter).
* :class:`RedisTracker`, selected when ``ANTISPAM_REDIS_URL`` is set: the counts of every process
  and replica sharing that Redis, one Lua script call (one round trip, atomic) per text.

Semantics both keep:

* **Clusters.** A text's signature keys (LSH bands and long sentences) are looked up; the first
  that already names a cluster gives the text's cluster, else the text starts one (named after
  its first key). The text's band keys, and the keys that already name its cluster, are then
  filed under that cluster for a window (a key naming another cluster is left to it). So a
  variant joins the campaign if it shares a band with *any* earlier member. Sentence keys are
  filed only by the text that starts the cluster: a copy with ordinary chat around the advert
  joins through the advert's sentence, but its chat is not filed, else an ordinary message that
  says the same sentence would join the campaign (a simulation with the trainer's variants, 40
  campaigns of 30 copies among the test split's 881 ordinary messages, which the copies quote:
  ordinary messages marked 38 when every sentence was filed, 5 like this; copies after the
  10th marked 87.9 % and 86.9 %).
* **Sliding window in slots.** The window (``window_seconds``) is cut into :data:`SLOTS` slots;
  a counter counts the slot ``now`` falls in and the ``SLOTS - 1`` before it, so what is counted
  is at least ``window·(1 - 1/SLOTS)`` and at most ``window`` seconds old.
* ``senders``: distinct sender hashes in those slots (Redis: a HyperLogLog per slot, merged by
  ``PFCOUNT``: exact in practice at these sizes, 0.81 % standard error for large ones, 12 KB at
  most per slot however many senders; in process: a dict of sender → last slot, capped).
* ``first_seen``: when the counter was first seen since it was last idle a whole window.
* **Time**: ``now`` as given (tests, replays), else the wall clock (Redis: the server's
  ``TIME``, so processes with skewed clocks agree).

Evidence is returned only for a text that carries a sender id (the caller hashes it,
:mod:`antispam.senders`): without one, nothing is observed. When a counter first crosses the
threshold its text is kept as the campaign's example (the text as sent, at most
:data:`EXAMPLE_CHARS` characters, and its contacts), for ``top()`` (the console's Campaigns
view); nothing else keeps a text.

**When Redis cannot answer**, ``ANTISPAM_REDIS_FAIL`` decides as for the rate limiter
(:mod:`antispam.ratelimit`): ``open`` (default) counts in this process's own
:class:`MemoryTracker` and tries Redis again after :data:`RETRY_SECONDS` (campaigns are then
counted per process: evidence comes later, never wrongly); ``closed`` raises
:class:`TrackerUnavailable` (the service: 503 ``campaign_tracker_unavailable``) for requests
that carry a sender id.

No Tornado, no TensorFlow: the core layer. Calls are synchronous, on the event loop: a script
call on loopback is a fraction of a millisecond and the timeout bounds the worst case.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from antispam.contacts import Contact
from antispam.ratelimit import redis_client
from antispam.signatures import PIECE, signature_keys

log = logging.getLogger(__name__)

SLOTS = 10
EXAMPLE_CHARS = 1000
RETRY_SECONDS = 1.0
PREFIX = "antispam:campaign:"
DEFAULT_WINDOW_SECONDS = 600.0
DEFAULT_MIN_SENDERS = 5
DEFAULT_MAX_COUNTERS = 10_000
# Cluster keys kept in process per counter: a text files ~17 keys (16 bands, its long sentences).
KEYS_PER_COUNTER = 17
DEFAULT_MAX_SENDERS = 10_000


@dataclass(frozen=True)
class Evidence:
    """A counter over the threshold: the campaign a text belongs to."""

    key: str  # "t:<cluster>" (near-duplicate texts) or "c:<hash of kind:value>" (a contact)
    size: int  # texts in the window
    senders: int  # distinct senders in the window
    first_seen: float  # unix seconds

    @property
    def by(self) -> str:
        """``text`` (near-duplicates) or ``contact`` (a shared contact)."""
        return "contact" if self.key.startswith("c:") else "text"

    def as_dict(self) -> dict[str, Any]:
        """The item's ``campaign`` field (docs/contracts.md#campaigns)."""
        return {"size": self.size, "senders": self.senders, "first_seen": round(self.first_seen, 3), "by": self.by}


class CampaignTracker(Protocol):
    """What the scorer asks (one call per text that carries a sender id) and what the console
    lists."""

    window_seconds: float
    min_senders: int

    def observe(self, text: str, normalized: str, contacts: Sequence[Contact], sender: str,
                now: float | None = None) -> Evidence | None:
        """Count the text; its campaign evidence (the largest of its counters over the threshold:
        most senders, then size, then a contact's) or None."""

    def top(self, n: int, now: float | None = None) -> list[dict[str, Any]]:
        """The ``n`` largest active campaigns (most senders first): ``key``, ``by``, ``size``,
        ``senders``, ``first_seen``, ``example: {text, contacts}``."""

    def active(self, now: float | None = None) -> int:
        """How many counters are over the threshold in the window now."""

    def close(self) -> None: ...


class TrackerUnavailable(Exception):
    """The shared tracker (Redis) cannot answer and fails closed (the service: 503)."""


def contact_key(contact: Contact) -> str:
    """The counter of a contact: its kind and normalized value, hashed (short, fixed length)."""
    return "c:" + hashlib.blake2b(f"{contact.kind}:{contact.value}".encode("utf-8"), digest_size=8).hexdigest()


def example_of(text: str, contacts: Sequence[Contact]) -> dict[str, Any]:
    """What ``top()`` shows of a campaign: its text as sent (cut at :data:`EXAMPLE_CHARS`) and
    the contacts inside that cut, with offsets into it."""
    cut = text[:EXAMPLE_CHARS]
    return {"text": cut, "contacts": [c.as_dict() for c in contacts if c.end <= len(cut)]}


def _check(window_seconds: float, min_senders: int) -> None:
    if not (window_seconds > 0 and math.isfinite(window_seconds)):
        raise ValueError(f"the campaign window must be a positive number of seconds, got {window_seconds!r}")
    if isinstance(min_senders, bool) or not isinstance(min_senders, int) or min_senders < 2:
        raise ValueError(f"campaign min_senders must be an integer >= 2, got {min_senders!r}")


def _better(a: Evidence | None, b: Evidence) -> Evidence:
    """The evidence to report: most senders, then most texts, then a contact (a reviewer can
    act on it: block it)."""
    return b if a is None or (b.senders, b.size, b.by == "contact") > (a.senders, a.size, a.by == "contact") else a


@dataclass
class _Counter:
    slots: dict[int, int] = field(default_factory=dict)  # slot -> texts
    senders: dict[str, int] = field(default_factory=dict)  # sender -> last slot (oldest first)
    first_seen: float = 0.0
    last_seen: float = 0.0
    example: dict[str, Any] | None = None


class MemoryTracker:
    """This process's campaign counts; see the module docstring. Memory is bounded: at most
    ``max_counters`` counters and ``max_counters`` × :data:`KEYS_PER_COUNTER` cluster keys, the
    least recently used dropped first (a running campaign is used with every copy, so it stays),
    and ``max_senders`` senders per counter."""

    def __init__(self, window_seconds: float = DEFAULT_WINDOW_SECONDS, min_senders: int = DEFAULT_MIN_SENDERS, *,
                 max_counters: int = DEFAULT_MAX_COUNTERS, max_senders: int = DEFAULT_MAX_SENDERS,
                 clock: Callable[[], float] = time.time) -> None:
        _check(window_seconds, min_senders)
        self.window_seconds = float(window_seconds)
        self.min_senders = min_senders
        self.slot_seconds = self.window_seconds / SLOTS
        self.max_counters = max_counters
        self.max_senders = max_senders
        self._clock = clock
        self._clusters: OrderedDict[str, tuple[str, float]] = OrderedDict()  # key -> (cluster, expires)
        self._counters: OrderedDict[str, _Counter] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, text: str, normalized: str, contacts: Sequence[Contact], sender: str,
                now: float | None = None) -> Evidence | None:
        now = self._clock() if now is None else now
        keys = signature_keys(normalized)
        counters = list(dict.fromkeys(contact_key(c) for c in contacts))
        with self._lock:
            if keys:
                counters.insert(0, "t:" + self._cluster(keys, now))
            best: Evidence | None = None
            for name in counters:
                evidence = self._count(name, sender, now, text, contacts)
                if evidence is not None:
                    best = _better(best, evidence)
            return best

    def _cluster(self, keys: list[str], now: float) -> str:
        clusters = self._clusters
        cluster = None
        for key in keys:
            found = clusters.get(key)
            if found is not None and found[1] > now:
                cluster = found[0]
                break
        started = cluster is None
        cluster = cluster or keys[0]
        expires = now + self.window_seconds
        for key in keys:
            found = clusters.get(key)
            if found is not None and found[1] > now:
                if found[0] != cluster:
                    continue  # names another cluster: left to it
            elif not started and key.startswith(PIECE):
                continue  # a joiner's own sentences are not filed (module docstring: Clusters)
            clusters[key] = (cluster, expires)
            clusters.move_to_end(key)
        while len(clusters) > self.max_counters * KEYS_PER_COUNTER:
            clusters.popitem(last=False)
        return cluster

    def _count(self, name: str, sender: str, now: float, text: str, contacts: Sequence[Contact]) -> Evidence | None:
        slot = math.floor(now / self.slot_seconds)
        oldest = slot - SLOTS + 1
        counter = self._counters.get(name)
        if counter is None or counter.last_seen <= now - self.window_seconds:
            counter = _Counter(first_seen=now)
            self._counters[name] = counter
            if len(self._counters) > self.max_counters:
                self._counters.popitem(last=False)
        else:
            self._counters.move_to_end(name)
        counter.last_seen = max(counter.last_seen, now)
        counter.slots[slot] = counter.slots.get(slot, 0) + 1
        for old in [s for s in counter.slots if s < oldest]:
            del counter.slots[old]
        senders = counter.senders
        senders.pop(sender, None)
        senders[sender] = slot  # most recent last
        while senders and (len(senders) > self.max_senders or next(iter(senders.values())) < oldest):
            del senders[next(iter(senders))]
        if len(senders) < self.min_senders:
            return None
        if counter.example is None:
            counter.example = example_of(text, contacts)
        return Evidence(name, sum(counter.slots.values()), len(senders), counter.first_seen)

    def _evidence(self, name: str, counter: _Counter, now: float) -> Evidence | None:
        oldest = math.floor(now / self.slot_seconds) - SLOTS + 1
        if counter.last_seen <= now - self.window_seconds:
            return None
        senders = sum(1 for s in counter.senders.values() if s >= oldest)
        if senders < self.min_senders:
            return None
        return Evidence(name, sum(n for s, n in counter.slots.items() if s >= oldest), senders, counter.first_seen)

    def top(self, n: int, now: float | None = None) -> list[dict[str, Any]]:
        now = self._clock() if now is None else now
        found = []
        with self._lock:
            for name, counter in self._counters.items():
                if counter.example is None:
                    continue
                evidence = self._evidence(name, counter, now)
                if evidence is not None:
                    found.append((evidence, counter.example))
        return _ranked(found, n)

    def active(self, now: float | None = None) -> int:
        now = self._clock() if now is None else now
        with self._lock:
            return sum(1 for name, c in self._counters.items()
                       if c.example is not None and self._evidence(name, c, now) is not None)

    def close(self) -> None:
        pass


def _ranked(found: list[tuple[Evidence, dict[str, Any]]], n: int) -> list[dict[str, Any]]:
    found.sort(key=lambda pair: (-pair[0].senders, -pair[0].size, pair[0].first_seen, pair[0].key))
    return [{"key": e.key, "by": e.by, "size": e.size, "senders": e.senders, "first_seen": round(e.first_seen, 3),
             "example": example} for e, example in found[:max(0, n)]]


# One round trip per text. KEYS: none (the counters' names depend on the cluster found here, so
# the script computes them: a single Redis, not Redis Cluster). ARGV: prefix, now ('' = TIME),
# window ms, slots, min senders, sender, example JSON, the signature keys (space-separated), the
# contact counters (space-separated): few arguments, as encoding each one costs the client CPU.
# Returns, flat, per counter: name, size, senders, first_seen (ms).
OBSERVE = """
local p = ARGV[1]
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[2])
end
local window = tonumber(ARGV[3])
local slots = tonumber(ARGV[4])
local min_senders = tonumber(ARGV[5])
local sender = ARGV[6]
local example = ARGV[7]
local keys = {}
for k in string.gmatch(ARGV[8], '%S+') do keys[#keys + 1] = k end
local nkeys = #keys
local slot_ms = window / slots
local slot = math.floor(now / slot_ms)
local oldest = slot - slots + 1
local ttl = math.ceil(window + slot_ms)
local counters = {}
if nkeys > 0 then
  -- a key names its cluster until it expires (value: cluster|expiry ms, checked against
  -- `now` so that a given clock and Redis's agree; the key's own TTL only frees memory)
  local names = {}
  for i = 1, nkeys do names[i] = p .. 'k:' .. keys[i] end
  local values = redis.call('MGET', unpack(names))
  local cluster = false
  local named = {}
  for i = 1, nkeys do
    local v = values[i]
    if v then
      local bar = string.find(v, '|', 1, true)
      if tonumber(string.sub(v, bar + 1)) > now then
        named[i] = string.sub(v, 1, bar - 1)
        if not cluster then cluster = named[i] end
      end
    end
  end
  local started = not cluster
  if started then cluster = keys[1] end
  local value = cluster .. '|' .. string.format('%d', now + window)
  for i = 1, nkeys do
    -- a joiner files its bands and refreshes keys of its cluster; only a starter files sentences
    if named[i] == cluster or (named[i] == nil and (started or string.sub(keys[i], 1, 1) ~= 'p')) then
      redis.call('SET', names[i], value, 'PX', window)
    end
  end
  counters[1] = 't:' .. cluster
end
for c in string.gmatch(ARGV[9], '%S+') do counters[#counters + 1] = c end
local out = {}
for _, name in ipairs(counters) do
  local c = p .. name
  local seen = redis.call('HMGET', c .. ':f', 'first', 'last')
  local first = seen[1]
  if not first or tonumber(seen[2]) <= now - window then
    first = string.format('%d', now)
    redis.call('DEL', c .. ':x')
  end
  local last = now
  if seen[2] and tonumber(seen[2]) > now then last = tonumber(seen[2]) end
  redis.call('HSET', c .. ':f', 'first', first, 'last', string.format('%d', last))
  redis.call('PEXPIRE', c .. ':f', ttl)
  redis.call('HINCRBY', c .. ':n', slot, 1)
  local counts = redis.call('HGETALL', c .. ':n')
  local size = 0
  for j = 1, #counts, 2 do
    if tonumber(counts[j]) < oldest then
      redis.call('HDEL', c .. ':n', counts[j])
    else
      size = size + tonumber(counts[j + 1])
    end
  end
  redis.call('PEXPIRE', c .. ':n', ttl)
  redis.call('PFADD', c .. ':s:' .. slot, sender)
  redis.call('PEXPIRE', c .. ':s:' .. slot, ttl)
  local hlls = {}
  for s = oldest, slot do hlls[#hlls + 1] = c .. ':s:' .. s end
  local senders = redis.call('PFCOUNT', unpack(hlls))
  if senders >= min_senders then
    redis.call('SET', c .. ':x', example, 'NX', 'PX', ttl)
    redis.call('PEXPIRE', c .. ':x', ttl)
    redis.call('ZADD', p .. 'active', now, name)
  end
  out[#out + 1] = name
  out[#out + 1] = size
  out[#out + 1] = senders
  out[#out + 1] = first
end
return out
"""

# Read-only: the current size, senders and first_seen of the given counters. ARGV: prefix, now
# ('' = TIME), window ms, slots, then the counter names. Returns per counter: name, size,
# senders, first_seen (ms, or '' when idle a whole window), example JSON (or '').
READ = """
local p = ARGV[1]
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[2])
end
local window = tonumber(ARGV[3])
local slots = tonumber(ARGV[4])
local slot_ms = window / slots
local slot = math.floor(now / slot_ms)
local oldest = slot - slots + 1
redis.call('ZREMRANGEBYSCORE', p .. 'active', '-inf', now - window)
local out = {}
for i = 5, #ARGV do
  local c = p .. ARGV[i]
  local counts = redis.call('HGETALL', c .. ':n')
  local size = 0
  for j = 1, #counts, 2 do
    if tonumber(counts[j]) >= oldest then size = size + tonumber(counts[j + 1]) end
  end
  local hlls = {}
  for s = oldest, slot do hlls[#hlls + 1] = c .. ':s:' .. s end
  local seen = redis.call('HMGET', c .. ':f', 'first', 'last')
  local first = ''
  if seen[1] and tonumber(seen[2]) > now - window then first = seen[1] end
  out[#out + 1] = {ARGV[i], size, redis.call('PFCOUNT', unpack(hlls)), first, redis.call('GET', c .. ':x') or ''}
end
return out
"""


class RedisTracker:
    """Campaign counts in Redis, shared by every process; see the module docstring.
    ``clock``: seconds to use instead of Redis's TIME (tests); ``fallback``: the tracker used
    while failing open. The same ``prefix`` must be used by every process that shares counts."""

    def __init__(self, url: str, window_seconds: float = DEFAULT_WINDOW_SECONDS,
                 min_senders: int = DEFAULT_MIN_SENDERS, *, fail: str = "open", timeout_ms: float = 100.0,
                 prefix: str = PREFIX, clock: Callable[[], float] | None = None,
                 fallback: MemoryTracker | None = None, retry_seconds: float = RETRY_SECONDS,
                 max_listed: int = 1000) -> None:
        self._client, self._errors = redis_client(url, fail, timeout_ms)
        _check(window_seconds, min_senders)
        self.window_seconds = float(window_seconds)
        self.min_senders = min_senders
        self.fail = fail
        self.prefix = prefix
        self.retry_seconds = retry_seconds
        self.max_listed = max_listed
        self._clock = clock
        self._fallback = fallback or MemoryTracker(window_seconds, min_senders)
        self._observe: Any = self._client.register_script(OBSERVE)
        self._window_ms = str(int(self.window_seconds * 1000))
        self._read: Any = self._client.register_script(READ)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.failures = 0  # calls Redis could not answer
        self.fallbacks = 0  # texts counted by the fallback (open) or refused (closed)

    def _now(self, now: float | None) -> str:
        if now is None:
            now = None if self._clock is None else self._clock()
        return "" if now is None else str(int(round(now * 1000)))

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            first = time.monotonic() >= self._down_until
            self._down_until = time.monotonic() + self.retry_seconds
        if first:
            log.warning("the campaign tracker cannot reach Redis (%s: %s); failing %s for %.0f s",
                        type(exc).__name__, exc, self.fail, self.retry_seconds)

    def _unavailable(self) -> TrackerUnavailable:
        return TrackerUnavailable("the shared campaign tracker (Redis) is unreachable and fails closed")

    def observe(self, text: str, normalized: str, contacts: Sequence[Contact], sender: str,
                now: float | None = None) -> Evidence | None:
        keys = signature_keys(normalized)
        counters = list(dict.fromkeys(contact_key(c) for c in contacts))
        if not keys and not counters:
            return None  # too short for a signature and no contact: nothing to count, no round trip
        if time.monotonic() >= self._down_until:
            example = json.dumps(example_of(text, contacts), ensure_ascii=False)
            args = [self.prefix, self._now(now), self._window_ms, str(SLOTS), str(self.min_senders), sender,
                    example, " ".join(keys), " ".join(counters)]
            try:
                reply = self._observe(keys=[], args=args)
            except self._errors as exc:
                self._failed(exc)
            else:
                best: Evidence | None = None
                for j in range(0, len(reply), 4):
                    name, size, senders, first = reply[j:j + 4]
                    if int(senders) >= self.min_senders:
                        best = _better(best, Evidence(_text(name), int(size), int(senders), int(first) / 1000))
                return best
        self.fallbacks += 1
        if self.fail == "closed":
            raise self._unavailable()
        return self._fallback.observe(text, normalized, contacts, sender, now)

    def _listed(self, now: float | None) -> list[tuple[Evidence, dict[str, Any]]]:
        """The active counters with their current figures and examples (Redis errors raise)."""
        stamp = self._now(now)
        if stamp:
            cutoff: Any = int(stamp) - int(self.window_seconds * 1000)
        else:
            seconds, micros = self._client.time()
            cutoff = seconds * 1000 + micros // 1000 - int(self.window_seconds * 1000)
        names = self._client.zrevrangebyscore(self.prefix + "active", "+inf", f"({cutoff}", start=0,
                                              num=self.max_listed)
        if not names:
            return []
        reply = self._read(keys=[], args=[self.prefix, stamp, str(int(self.window_seconds * 1000)), str(SLOTS),
                                          *(_text(n) for n in names)])
        out = []
        for name, size, senders, first, example in reply:
            if int(senders) >= self.min_senders and first and example:
                out.append((Evidence(_text(name), int(size), int(senders), int(first) / 1000),
                            json.loads(_text(example))))
        return out

    def top(self, n: int, now: float | None = None) -> list[dict[str, Any]]:
        try:
            return _ranked(self._listed(now), n)
        except self._errors as exc:
            self._failed(exc)
            if self.fail == "closed":
                raise self._unavailable() from None
            return self._fallback.top(n, now)

    def active(self, now: float | None = None) -> int:
        try:
            return len(self._listed(now))
        except self._errors as exc:
            self._failed(exc)
            if self.fail == "closed":
                raise self._unavailable() from None
            return self._fallback.active(now)

    def close(self) -> None:
        self._client.close()


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def make_tracker(redis_url: str = "", *, window_seconds: float = DEFAULT_WINDOW_SECONDS,
                 min_senders: int = DEFAULT_MIN_SENDERS, fail: str = "open", timeout_ms: float = 100.0,
                 max_counters: int = DEFAULT_MAX_COUNTERS) -> CampaignTracker:
    """The service's tracker: Redis when a URL is set, else this process's own counts."""
    memory = MemoryTracker(window_seconds, min_senders, max_counters=max_counters)
    if not redis_url:
        return memory
    return RedisTracker(redis_url, window_seconds, min_senders, fail=fail, timeout_ms=timeout_ms, fallback=memory)
