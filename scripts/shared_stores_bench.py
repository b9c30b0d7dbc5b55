"""Figures for issue 23: shared rate limits, /feedback latency per store, and a PostgreSQL outage.

Starts real ``antispam serve`` processes (local backend, a tiny model) on 127.0.0.1 against the
PostgreSQL and Redis you name, and prints:

1. **Rate limits**: two processes hammer one key (rate ``--rate``/s) for ``--seconds``: how many
   requests were allowed in total, with Redis and without (each process its own buckets), against
   the bound rate × seconds + burst (2 × rate).
2. **/feedback latency**: ``--requests`` sequential POST /feedback (distinct texts) to a process
   on SQLite and to one on PostgreSQL: p50, p99, max (client side, keep-alive connection).
3. **Outage** (with ``--stop``/``--start``, shell commands that stop and start the PostgreSQL):
   /feedback status, error code and time while it is down, /predict status meanwhile, the time
   until /feedback is accepted again after the start, and whether every row acknowledged before
   the stop is still there.

    python scripts/shared_stores_bench.py --postgres-url postgresql://postgres@127.0.0.1:5432/postgres \\
        --redis-url redis://127.0.0.1:6379/0 [--stop 'pg_ctl ... stop -m immediate' --start '...']

Uses a fresh schema in the database (dropped at the end); the Redis bucket keys are the
service's own (``antispam:bucket:<key id>``), with key ids unique to the run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

READY = re.compile(r"ready on http://127\.0\.0\.1:(\d+)")


class Serve:
    """One ``antispam serve`` subprocess; ``port`` once it says ready."""

    def __init__(self, *args: str, cwd: Path) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        self.proc = subprocess.Popen([sys.executable, "-m", "antispam", "serve", "--host", "127.0.0.1",
                                      "--port", "0", *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.port = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait(self, timeout: float = 180) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.lines:
                found = READY.search(line)
                if found:
                    self.port = int(found.group(1))
                    return
            if self.proc.poll() is not None:
                raise SystemExit("serve exited:\n" + "".join(self.lines[-30:]))
            time.sleep(0.1)
        raise SystemExit("serve not ready:\n" + "".join(self.lines[-30:]))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def call(conn: http.client.HTTPConnection, method: str, path: str, key: str,
         body: Any = None) -> tuple[int, dict, float]:
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    headers = {"Authorization": f"Bearer {key}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    started = time.perf_counter()
    conn.request(method, path, body=data, headers=headers)
    answer = conn.getresponse()
    raw = answer.read()
    took = time.perf_counter() - started
    return answer.status, json.loads(raw or b"{}"), took


def hammer(ports: list[int], key: str, seconds: float) -> dict[int, int]:
    counts: dict[int, int] = {}
    lock = threading.Lock()
    start = time.monotonic()

    def run(port: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() - start < seconds:
            try:
                status, _body, _took = call(conn, "GET", "/models", key)
            except (http.client.RemoteDisconnected, ConnectionError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            with lock:
                counts[status] = counts.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=run, args=(p,)) for p in ports for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def latencies(port: int, key: str, n: int, tag: str) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for i in range(n):
        # Distinct after normalization (which masks digits): the number spelled in characters.
        text = f"加微信领红包 {tag} " + "".join("甲乙丙丁戊己庚辛壬癸"[int(d)] for d in str(i))
        status, body, took = call(conn, "POST", "/feedback", key, {"text": text, "label": "spam"})
        if status != 202:
            raise SystemExit(f"/feedback answered {status}: {body}")
        out.append(took * 1000)
    conn.close()
    return out


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return (f"n={len(values)} p50={statistics.median(ordered):.2f} ms p99={p99:.2f} ms "
            f"max={ordered[-1]:.2f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--postgres-url", required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--stop", help="shell command that stops the PostgreSQL (outage step)")
    p.add_argument("--start", help="shell command that starts it again")
    args = p.parse_args()

    import psycopg

    from antispam.keys import add_key
    from antispam.testing.tinymodel import build_version

    root = Path(tempfile.mkdtemp(prefix="shared-stores-"))
    build_version(root / "models" / "cnn")
    run = uuid.uuid4().hex[:6]
    keys = root / "keys.tsv"
    limited = add_key(keys, f"limited-{run}", ["predict", "feedback", "viewer"], args.rate)
    free = add_key(keys, f"free-{run}", ["predict", "feedback", "viewer"], 1e6)
    schema = f"bench_{run}"
    with psycopg.connect(args.postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in args.postgres_url else "?"
    db = f"{args.postgres_url}{sep}options={quote(f'-csearch_path={schema}')}"
    common = ("--backend", "local", "--model-base", str(root / "models"), "--model-name", "cnn",
              "--keys-file", str(keys), "--cache-size", "0", "--deadline-ms", "60000")
    procs = {
        "redis_a": Serve(*common, "--feedback-db", db, "--redis-url", args.redis_url, cwd=root),
        "redis_b": Serve(*common, "--feedback-db", db, "--redis-url", args.redis_url, cwd=root),
        "local_a": Serve(*common, "--feedback-db", db, cwd=root),
        "local_b": Serve(*common, "--feedback-db", db, cwd=root),
        "sqlite": Serve(*common, "--feedback-db", str(root / "feedback.db"), cwd=root),
    }
    try:
        for proc in procs.values():
            proc.wait()
        print(f"# {len(procs)} serve processes ready; key rate {args.rate:g}/s, burst {2 * args.rate:g}")
        bound = args.rate * args.seconds + 2 * args.rate
        for label, names in (("Redis (shared buckets)", ("redis_a", "redis_b")),
                             ("in-process buckets", ("local_a", "local_b"))):
            counts = hammer([procs[n].port for n in names], limited, args.seconds)
            print(f"rate limit, two processes, {label}: {counts.get(200, 0)} allowed, {counts.get(429, 0)} "
                  f"limited in {args.seconds:g} s (bound rate x time + burst = {bound:g}); statuses {counts}")

        sqlite = latencies(procs["sqlite"].port, free, args.requests, "sqlite")
        postgres = latencies(procs["redis_a"].port, free, args.requests, "postgres")
        print(f"/feedback latency, SQLite (synchronous=FULL): {summary(sqlite)}")
        print(f"/feedback latency, PostgreSQL (loopback):     {summary(postgres)}")

        if args.stop and args.start:
            port = procs["redis_a"].port
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with psycopg.connect(db) as check:
                before = check.execute("SELECT COUNT(*), COALESCE(SUM(count), 0) FROM feedback").fetchone()
            subprocess.run(args.stop, shell=True, check=True)
            print(f"outage: stopped PostgreSQL ({args.stop!r}); rows before: {before}")
            for i in range(3):
                status, body, took = call(conn, "POST", "/feedback", free, {"text": f"停机期间{i}", "label": "spam"})
                code = body.get("error", {}).get("code")
                print(f"  POST /feedback while down: {status} {code} in {took * 1000:.0f} ms")
                status, body, took = call(conn, "GET", "/predict?text=%E4%BB%A3%E5%BC%80%E5%8F%91%E7%A5%A8",
                                          free)
                print(f"  GET /predict while down:   {status} in {took * 1000:.1f} ms")
            subprocess.run(args.start, shell=True, check=True)
            started = time.monotonic()
            while True:
                status, body, took = call(conn, "POST", "/feedback", free, {"text": "恢复之后", "label": "spam"})
                if status == 202 or time.monotonic() - started > 60:
                    break
                time.sleep(0.2)
            print(f"  after the start: POST /feedback {status} after {time.monotonic() - started:.1f} s")
            with psycopg.connect(db) as check:
                after = check.execute("SELECT COUNT(*), COALESCE(SUM(count), 0) FROM feedback "
                                      "WHERE text <> '恢复之后'").fetchone()
            print(f"  rows acknowledged before the stop still there: {after == before} ({after})")
    finally:
        for proc in procs.values():
            proc.stop()
        with psycopg.connect(args.postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
