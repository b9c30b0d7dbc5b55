"""What campaign detection costs per message, in CPU time, on the corpus.

    python scripts/campaigns_cost.py [--data msglog.tar.gz] [--limit 20000] [--repeats 3] [--redis URL]

Reads the corpus (``--data``, else ``$ANTISPAM_DATA``), takes every ``len/limit``-th message, and
times over ``--repeats`` passes (median), per message: ``normalize`` and ``find_contacts`` (what
the scorer already has or pays for a text with a sender id, for scale), ``signature_keys`` (the
MinHash bands and sentence keys), and ``observe`` of the in-process tracker (signature included,
each message from its own sender, a fresh tracker per pass). With ``--redis`` also the Redis
tracker's ``observe`` (client CPU here, and wall time per call: the round trip and the script),
on a fresh key prefix, and the number of keys it left. Prints microseconds per message.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

from antispam.campaigns import MemoryTracker, RedisTracker
from antispam.contacts import find_contacts
from antispam.data import read_corpus
from antispam.signatures import signature_keys
from antispam.text import normalize


def per_message_us(fn: Callable[[int], object], count: int, repeats: int,
                   setup: Callable[[], None] | None = None) -> tuple[float, float]:
    """(CPU µs, wall µs) per call, medians over ``repeats`` passes of ``fn(0..count-1)``."""
    cpu, wall = [], []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        for i in range(count):
            fn(i)
        cpu.append((time.process_time() - start_cpu) / count * 1e6)
        wall.append((time.perf_counter() - start_wall) / count * 1e6)
    return statistics.median(cpu), statistics.median(wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("ANTISPAM_DATA"))
    parser.add_argument("--limit", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--redis", default="", help="a Redis URL: also time the Redis tracker")
    args = parser.parse_args(argv)
    if not args.data or not Path(args.data).exists():
        print("give --data or set ANTISPAM_DATA to the corpus", file=sys.stderr)
        return 2
    samples = read_corpus(args.data)
    step = max(1, len(samples) // args.limit)
    texts = [s.text for s in samples[::step]][:args.limit]
    norms = [normalize(t) for t in texts]
    contacts = [find_contacts(t) for t in texts]
    senders = [f"sender-{i}" for i in range(len(texts))]
    n = len(texts)
    signed = sum(1 for norm in norms if signature_keys(norm))
    print(f"corpus: {n} messages of {len(samples)} (every {step}th), {sum(map(len, texts)) / n:.1f} characters "
          f"on average, {signed} ({100 * signed / n:.0f}%) long enough for a signature; CPU time "
          f"(process_time), median of {args.repeats} passes")
    rows: list[tuple[str, Callable[[int], object], Callable[[], None] | None]] = [
        ("normalize", lambda i: normalize(texts[i]), None),
        ("find_contacts", lambda i: find_contacts(texts[i]), None),
        ("signature_keys", lambda i: signature_keys(norms[i]), None),
    ]
    memory: list[MemoryTracker] = [MemoryTracker()]

    def fresh_memory() -> None:
        memory[0] = MemoryTracker()

    rows.append(("observe (in process)", lambda i: memory[0].observe(texts[i], norms[i], contacts[i], senders[i]),
                 fresh_memory))
    redis_tracker: list[RedisTracker] = []
    if args.redis:
        def fresh_redis() -> None:
            if redis_tracker:
                redis_tracker[0].close()
            redis_tracker[:] = [RedisTracker(args.redis, prefix=f"antispam-cost:{uuid.uuid4().hex[:8]}:",
                                             fail="closed", timeout_ms=1000)]

        rows.append(("observe (Redis)", lambda i: redis_tracker[0].observe(texts[i], norms[i], contacts[i],
                                                                           senders[i]), fresh_redis))
    for name, fn, setup in rows:
        cpu, wall = per_message_us(fn, n, args.repeats, setup)
        print(f"  {name:<22} {cpu:8.1f} µs/message CPU   {wall:8.1f} µs wall")
    if redis_tracker:
        client = redis_tracker[0]._client
        keys = list(client.scan_iter(match=redis_tracker[0].prefix + "*", count=10000))
        memory_bytes = sum(client.memory_usage(k) or 0 for k in keys)
        print(f"  Redis after one pass: {len(keys)} keys, {memory_bytes / 1e6:.1f} MB (MEMORY USAGE), "
              f"{len(client.zrange(redis_tracker[0].prefix + 'active', 0, -1))} active")
        for key in keys:
            client.delete(key)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
