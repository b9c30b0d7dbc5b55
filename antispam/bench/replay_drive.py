"""Replay a trace (:mod:`antispam.bench.replay`) against running services and judge the answers.

**Time.** A trace spans simulated minutes (30 by default). It is replayed *compressed*: message
*i* is due at ``start + at_i / speedup`` of the wall clock and is sent then, whatever happened to
earlier ones (open loop; latency counts from the due time). The services keep their own clock,
so a service's campaign window must be the simulated window divided by ``speedup`` too: the
bench starts the services with it (``antispam bench --replay`` says both). What compression
changes is only the request rate (trace messages / (span / speedup)); the order of the messages
and which of them share a window are those of the trace.

**Side by side.** Every message is sent to every target at its due time (one GET
``/predict?text=…&sender_id=…`` each, over keep-alive connections), so the services with the
feature on and off see the same traffic under the same machine load at the same moment; their
CPU is sampled over the same window (:mod:`antispam.bench.procstats`).

**Judging** (:func:`judge`): a message is *caught* when its answer's ``suggestion`` is ``block``
or ``review``. Per campaign: how many copies passed before the first caught one, the share caught
(recall) overall and from its 11th copy on (the issue's target), the copy from which the service
marked it a campaign (``campaign`` in the item). For everything that is not spam: how many were
blocked or sent to review (ordinary test-split messages, held-out everyday messages, each burst).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from antispam.bench.load import Connection, ProtocolError, loopback_address
from antispam.bench.replay import Message, Trace
from antispam.bench.stats import median, summarize

CAUGHT = ("block", "review")
AFTER = 10  # the target counts campaign copies after the 10th


@dataclass
class Answer:
    """One target's answer to one message (``suggestion`` None: no usable answer)."""

    status: int | None
    latency_ms: float
    suggestion: str | None = None
    decided_by: str | None = None
    campaign: dict[str, Any] | None = None
    error: str | None = None


def request_bytes(host: str, port: int, message: Message, extra: Mapping[str, str] | None = None,
                  sender: bool = True) -> bytes:
    """``GET /predict?text=…&sender_id=…`` (without ``sender_id`` when not ``sender``: a service
    observes no text that comes without one, which is how the ``off`` target runs)."""
    query = {"text": message.text, **({"sender_id": message.sender} if sender else {}), **(extra or {})}
    target = "/predict?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    return (f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: antispam-bench-replay\r\n\r\n"
            .encode("ascii"))


def parse_answer(status: int, body: bytes, latency_ms: float) -> Answer:
    if status != 200:
        return Answer(status, latency_ms, error=f"http_{status}")
    try:
        data = json.loads(body)["data"]
        suggestion = data["suggestion"]
    except (ValueError, KeyError, TypeError):
        return Answer(status, latency_ms, error="bad_body")
    campaign = data.get("campaign")
    return Answer(status, latency_ms, suggestion, data.get("decided_by"),
                  campaign if isinstance(campaign, dict) else None)


class _Pool:
    """Keep-alive connections to one target, at most ``limit`` at a time."""

    def __init__(self, url: str, limit: int, timeout: float) -> None:
        self.host, self.port = loopback_address(url)
        self.idle: list[Connection] = []
        self.gate = asyncio.Semaphore(limit)
        self.timeout = timeout

    async def send(self, raw: bytes, due: float) -> Answer:
        loop = asyncio.get_running_loop()
        async with self.gate:
            conn = self.idle.pop() if self.idle else None
            try:
                if conn is None:
                    conn = await asyncio.wait_for(Connection.open(self.host, self.port), self.timeout)
                status, body, keep = await asyncio.wait_for(conn.request(raw), self.timeout)
            except asyncio.TimeoutError:
                if conn is not None:
                    conn.close()
                return Answer(None, (loop.time() - due) * 1000.0, error="timeout")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError, ValueError):
                if conn is not None:
                    conn.close()
                return Answer(None, (loop.time() - due) * 1000.0, error="connection")
            latency = (loop.time() - due) * 1000.0
            if keep:
                self.idle.append(conn)
            else:
                conn.close()
        return parse_answer(status, body, latency)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


async def replay(trace: Trace, targets: Mapping[str, str], *, speedup: float, timeout: float = 5.0,
                 connections: int = 64, extra: Mapping[str, Mapping[str, str]] | None = None,
                 without_sender: Sequence[str] = ()) -> tuple[dict[str, list[Answer]], float]:
    """Send every message of ``trace`` to every target (name -> loopback URL) at its compressed
    due time; the answers per target in trace order, and the wall seconds the replay took.
    Targets named in ``without_sender`` get the same requests without ``sender_id``."""
    if speedup <= 0:
        raise ValueError("speedup must be > 0")
    loop = asyncio.get_running_loop()
    pools = {name: _Pool(url, connections, timeout) for name, url in targets.items()}
    raws = {name: [request_bytes(pool.host, pool.port, m, (extra or {}).get(name), name not in without_sender)
                   for m in trace.messages]
            for name, pool in pools.items()}
    tasks: dict[str, list[asyncio.Task[Answer]]] = {name: [] for name in targets}
    start = loop.time() + 0.1
    try:
        for i, message in enumerate(trace.messages):
            due = start + message.at / speedup
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            for name, pool in pools.items():
                tasks[name].append(asyncio.ensure_future(pool.send(raws[name][i], due)))
        answers = {name: list(await asyncio.gather(*group)) for name, group in tasks.items()}
    finally:
        for pool in pools.values():
            pool.close()
    return answers, loop.time() - start


def run_replay(trace: Trace, targets: Mapping[str, str], **kwargs: Any) -> tuple[dict[str, list[Answer]], float]:
    return asyncio.run(replay(trace, targets, **kwargs))


async def warm_up(targets: Mapping[str, str], texts: Sequence[str], seconds: float, timeout: float = 5.0) -> None:
    """Unrecorded load before the replay (first jieba and model calls, lazy imports): each of
    ``texts`` once at most, within ``seconds``, from its own made-up sender, 8 at a time per
    target. Once, so that no text reaches a campaign detector's threshold of senders."""
    if not texts or seconds <= 0:
        return
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    pools = {name: _Pool(url, 8, timeout) for name, url in targets.items()}

    async def worker(pool: _Pool, offset: int) -> None:
        i = offset
        while loop.time() < end and i < len(texts):
            message = Message(0.0, texts[i], f"warmup-{i}", "everyday")
            await pool.send(request_bytes(pool.host, pool.port, message), loop.time())
            i += 8

    try:
        await asyncio.gather(*(worker(pool, k) for pool in pools.values() for k in range(8)))
    finally:
        for pool in pools.values():
            pool.close()


async def passing(url: str, texts: Sequence[str], timeout: float = 5.0) -> list[str]:
    """The ``texts`` a service answers ``pass`` (each sent once, without a sender id, 8 at a
    time): the adverts its model alone would let through (``--replay-ads missed``)."""
    loop = asyncio.get_running_loop()
    pool = _Pool(url, 8, timeout)
    try:
        answers = await asyncio.gather(*(
            pool.send(request_bytes(pool.host, pool.port, Message(0.0, t, "", "single_spam"), sender=False),
                      loop.time()) for t in texts))
    finally:
        pool.close()
    return [t for t, a in zip(texts, answers) if a.suggestion == "pass"]


# --- judging ------------------------------------------------------------------------------------


def _caught(answer: Answer) -> bool:
    return answer.suggestion in CAUGHT


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def judge(trace: Trace, answers: Sequence[Answer]) -> dict[str, Any]:
    """The figures for one target's answers (same order as ``trace.messages``)."""
    if len(answers) != len(trace.messages):
        raise ValueError(f"{len(answers)} answers for {len(trace.messages)} messages")
    by_group: dict[str, list[tuple[Message, Answer]]] = {}
    for message, answer in zip(trace.messages, answers):
        if message.group is not None:
            by_group.setdefault(message.group, []).append((message, answer))
    campaigns: list[dict[str, Any]] = []
    for group in (g for g in trace.groups if g.kind == "campaign"):
        pairs = sorted(by_group.get(group.name, []), key=lambda p: p[0].index)
        first = next((i for i, (_m, a) in enumerate(pairs) if _caught(a)), None)
        flagged = next((i for i, (_m, a) in enumerate(pairs) if a.campaign is not None), None)
        later = pairs[AFTER:]
        campaigns.append({
            "name": group.name, "messages": len(pairs), "senders": group.senders,
            "contact_kind": group.contact_kind,
            # Copies answered "pass" before the first caught one (all of them if none was caught).
            "passed_before_caught": sum(1 for _m, a in pairs[:first if first is not None else len(pairs)]
                                        if a.suggestion == "pass"),
            "first_caught": first, "first_flagged": flagged,
            "caught": sum(_caught(a) for _m, a in pairs), "blocked": sum(a.suggestion == "block" for _m, a in pairs),
            "recall": _share(sum(_caught(a) for _m, a in pairs), len(pairs)),
            "after_10": len(later), "caught_after_10": sum(_caught(a) for _m, a in later),
            "recall_after_10": _share(sum(_caught(a) for _m, a in later), len(later)),
            "flagged": sum(a.campaign is not None for _m, a in pairs),
        })
    bursts: list[dict[str, Any]] = []
    for group in (g for g in trace.groups if g.kind == "burst"):
        pairs = by_group.get(group.name, [])
        bursts.append({"name": group.name, "messages": len(pairs), "senders": group.senders,
                       "blocked": sum(a.suggestion == "block" for _m, a in pairs),
                       "review": sum(a.suggestion == "review" for _m, a in pairs),
                       "flagged": sum(a.campaign is not None for _m, a in pairs)})
    singles: dict[str, dict[str, Any]] = {}
    for kind in ("ordinary", "everyday", "single_spam"):
        got = [a for m, a in zip(trace.messages, answers) if m.kind == kind]
        singles[kind] = {"messages": len(got), "blocked": sum(a.suggestion == "block" for a in got),
                         "review": sum(a.suggestion == "review" for a in got),
                         "flagged": sum(a.campaign is not None for a in got)}
    total = sum(c["messages"] for c in campaigns)
    after = sum(c["after_10"] for c in campaigns)
    passed = [c["passed_before_caught"] for c in campaigns]
    errors: dict[str, int] = {}
    for a in answers:
        if a.error:
            errors[a.error] = errors.get(a.error, 0) + 1
    decided: dict[str, int] = {}
    for a in answers:
        if a.decided_by:
            decided[a.decided_by] = decided.get(a.decided_by, 0) + 1
    return {
        "messages": len(answers),
        "errors": sum(errors.values()), "error_kinds": errors, "decided_by": decided,
        "latency_ms": summarize(a.latency_ms for a in answers),
        "campaign": {
            "messages": total,
            "recall": _share(sum(c["caught"] for c in campaigns), total),
            "recall_after_10": _share(sum(c["caught_after_10"] for c in campaigns), after),
            "blocked_share": _share(sum(c["blocked"] for c in campaigns), total),
            "passed_before_caught_median": median(passed) if passed else None,
            "passed_before_caught_max": max(passed) if passed else None,
            "never_caught": sum(c["first_caught"] is None for c in campaigns),
        },
        "campaigns": campaigns,
        "bursts": bursts,
        "burst_blocked": sum(b["blocked"] for b in bursts),
        "burst_review": sum(b["review"] for b in bursts),
        **singles,
    }


def difference(trace: Trace, on: Sequence[Answer], off: Sequence[Answer]) -> dict[str, Any]:
    """What the feature changed, message by message: per kind, how many messages ``on`` blocked
    (or caught: block or review) that ``off`` did not, and the reverse."""
    if not len(on) == len(off) == len(trace.messages):
        raise ValueError("answers and messages differ in number")
    out: dict[str, dict[str, int]] = {}
    for message, a, b in zip(trace.messages, on, off):
        row = out.setdefault(message.kind, {"messages": 0, "blocked_added": 0, "blocked_removed": 0,
                                            "caught_added": 0, "caught_removed": 0})
        row["messages"] += 1
        row["blocked_added"] += a.suggestion == "block" and b.suggestion != "block"
        row["blocked_removed"] += b.suggestion == "block" and a.suggestion != "block"
        row["caught_added"] += _caught(a) and not _caught(b)
        row["caught_removed"] += _caught(b) and not _caught(a)
    return out


def _shown(answer: Answer) -> str:
    """An answer's suggestion, or what stood in its place: a target that errored on a message has
    no suggestion, and the report must still print (and write) the row."""
    if answer.suggestion is not None:
        return answer.suggestion
    return f"error {answer.status}" if answer.status is not None else "error"


def changed_examples(trace: Trace, on: Sequence[Answer], off: Sequence[Answer],
                     kinds: Sequence[str] = ("ordinary", "everyday", "burst"), limit: int = 10) -> list[dict[str, Any]]:
    """Up to ``limit`` messages per kind that ``on`` caught (block/review) and ``off`` did not:
    the texts behind the false positives the feature added, for whoever looks into them. They
    are test-split texts: change settings on a ``--replay-split validation`` run, not on these."""
    out: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for message, a, b in zip(trace.messages, on, off):
        if message.kind not in kinds or not _caught(a) or _caught(b) or counts.get(message.kind, 0) >= limit:
            continue
        counts[message.kind] = counts.get(message.kind, 0) + 1
        out.append({"kind": message.kind, "group": message.group, "text": message.text, "on": a.suggestion,
                    "off": _shown(b), "decided_by": a.decided_by, "campaign": a.campaign})
    return out
