#!/usr/bin/env python
"""How long the text pipeline holds the event loop, and /healthz latency during a maximal request.

Two measurements (issue 11, docs/contracts.md#limits):

``pipeline``: in one process, normalize + jieba over a maximal request (by default 100 distinct
texts of 5,000 characters) on an asyncio loop, three ways, while a probe coroutine asks for the
loop every 5 ms and records how late it gets it (``idle``: the probe alone, the noise floor of
a shared machine):

* ``block``   the whole pipeline in one go (the code before issue 11);
* ``slices``  jieba's token generator walked in 1 ms slices, ``await asyncio.sleep(0)`` between
  them (what the service does: :class:`antispam.aio.Slices`);
* ``threads`` each text segmented in a thread pool (``--threads`` workers), the loop awaiting it.

``service``: a maximal ``POST /predict`` against a running service while another connection
polls ``GET /healthz`` back to back; prints the latency of those probes and of the big request.
``--url`` names a running service (loopback only); ``--tiny`` starts ``antispam serve
--backend local`` on a tiny test model (``--source DIR`` runs the service from another checkout,
e.g. the commit before a change, for a before/after figure).

    python scripts/loop_latency.py pipeline
    python scripts/loop_latency.py service --tiny --rounds 3
    python scripts/loop_latency.py service --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
# 500 frequent characters: random runs of them are mostly unknown to jieba's dictionary, which
# is its slowest case (long HMM passes), and every text is distinct so no cache helps.
COMMON = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"
          "而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好"
          "应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道"
          "命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长"
          "求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研")


def make_texts(count: int, chars: int, shape: str, seed: int = 20171128) -> list[str]:
    """``count`` distinct texts of ``chars`` characters: one unbroken CJK run (``block``, the
    worst case for jieba) or runs of 5-30 characters between commas (``punct``)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        if shape == "block":
            text = "".join(rng.choice(COMMON) for _ in range(chars))
        else:
            parts: list[str] = []
            while sum(len(p) + 1 for p in parts) < chars:
                parts.append("".join(rng.choice(COMMON) for _ in range(rng.randint(5, 30))))
            text = "，".join(parts)[:chars]
        texts.append(text)
    return texts


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# -- pipeline: how long the loop is held ---------------------------------------------------------

async def _probe(stop: asyncio.Event, lags: list[float], period: float = 0.005) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(period)
        lags.append(time.perf_counter() - started - period)


async def _run_strategy(name: str, texts: list[str], threads: int) -> dict[str, Any]:
    from antispam.aio import Slices
    from antispam.text import default_segmenter, normalize

    segmenter = default_segmenter()
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="jieba") if name == "threads" else None

    async def work() -> list[list[str]]:
        if name == "idle":  # the noise floor: the loop does nothing but the probe (a shared
            await asyncio.sleep(2.0)  # machine's other processes still delay it)
            return []
        if name == "block":
            return [segmenter.segment(normalize(t)) for t in texts]
        if name == "slices":
            slices = Slices()
            out = []
            for text in texts:
                tokens = []
                for token in segmenter.iter_segment(normalize(text)):
                    tokens.append(token)
                    await slices.tick()
                out.append(tokens)
                await slices.tick()
            return out
        assert pool is not None
        return list(await asyncio.gather(*(loop.run_in_executor(pool, segmenter.tokenize, t)
                                           for t in texts)))

    stop = asyncio.Event()
    lags: list[float] = []
    probe = asyncio.ensure_future(_probe(stop, lags))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    tokens = await work()
    seconds = time.perf_counter() - started
    stop.set()
    await probe
    if pool is not None:
        pool.shutdown()
    return {"strategy": name, "seconds": seconds, "tokens": sum(len(t) for t in tokens),
            "probes": len(lags), "lag_p50_ms": 1000 * percentile(lags, 50),
            "lag_p99_ms": 1000 * percentile(lags, 99), "lag_max_ms": 1000 * max(lags)}


def pipeline(args: argparse.Namespace) -> int:
    from antispam.text import default_segmenter

    default_segmenter()  # load jieba before timing
    texts = make_texts(args.texts, args.chars, args.shape)
    print(f"pipeline: {args.texts} texts x {args.chars} characters ({args.shape}), "
          f"switch interval {sys.getswitchinterval() * 1000:.0f} ms; probe every 5 ms")
    print(f"{'strategy':<10}{'seconds':>9}{'lag p50 ms':>12}{'lag p99 ms':>12}{'lag max ms':>12}{'probes':>8}")
    results = []
    for name in args.strategies:
        for _ in range(args.rounds):
            row = asyncio.run(_run_strategy(name, texts, args.threads))
            results.append(row)
            print(f"{name:<10}{row['seconds']:>9.2f}{row['lag_p50_ms']:>12.2f}{row['lag_p99_ms']:>12.2f}"
                  f"{row['lag_max_ms']:>12.2f}{row['probes']:>8}")
    if args.json:
        print(json.dumps(results))
    return 0


# -- service: /healthz while a maximal request is scored ----------------------------------------

def _loopback(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"loopback only: {url}")
    return parts.hostname, parts.port or 80


def measure_service(url: str, texts: list[str], rounds: int, timeout: float = 120.0,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Per round: one POST of ``texts`` on one connection, /healthz back to back on another."""
    host, port = _loopback(url)
    body = json.dumps({"texts": texts}, ensure_ascii=False).encode("utf-8")
    summary: dict[str, Any] = {"rounds": []}
    all_probes: list[float] = []
    for round_no in range(rounds):
        texts_round = [f"{round_no}{t[1:]}" for t in texts]  # distinct per round: no cache hits
        body = json.dumps({"texts": texts_round}, ensure_ascii=False).encode("utf-8")
        done = threading.Event()
        probes: list[float] = []

        def poll(done: threading.Event = done, probes: list[float] = probes) -> None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            while not done.is_set():
                started = time.perf_counter()
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    probes.append(time.perf_counter() - started)
                time.sleep(0.005)
            conn.close()

        prober = threading.Thread(target=poll, daemon=True)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        prober.start()
        time.sleep(0.05)
        started = time.perf_counter()
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        seconds = time.perf_counter() - started
        done.set()
        prober.join(timeout)
        conn.close()
        if response.status != 200:
            raise SystemExit(f"POST /predict answered {response.status}: {payload[:300]!r}")
        row = {"predict_seconds": seconds, "probes": len(probes),
               "healthz_p50_ms": 1000 * percentile(probes, 50),
               "healthz_p99_ms": 1000 * percentile(probes, 99),
               "healthz_max_ms": 1000 * max(probes) if probes else float("nan")}
        summary["rounds"].append(row)
        all_probes += probes
        log(f"round {round_no + 1}: POST /predict ({len(texts)} x {len(texts[0])} chars, "
            f"{len(body) / 1e6:.2f} MB) {seconds:.2f} s; /healthz during it: {len(probes)} probes, "
            f"p50 {row['healthz_p50_ms']:.1f} ms, p99 {row['healthz_p99_ms']:.1f} ms, "
            f"max {row['healthz_max_ms']:.1f} ms")
    summary.update(probes=len(all_probes), healthz_p50_ms=1000 * percentile(all_probes, 50),
                   healthz_p99_ms=1000 * percentile(all_probes, 99),
                   healthz_max_ms=1000 * max(all_probes) if all_probes else float("nan"),
                   predict_seconds_median=statistics.median(r["predict_seconds"] for r in summary["rounds"]))
    log(f"all rounds: {summary['probes']} probes, /healthz p50 {summary['healthz_p50_ms']:.1f} ms, "
        f"p99 {summary['healthz_p99_ms']:.1f} ms, max {summary['healthz_max_ms']:.1f} ms; "
        f"POST median {summary['predict_seconds_median']:.2f} s")
    return summary


def start_tiny_service(workdir: Path, source: Path) -> tuple[subprocess.Popen[str], str]:
    """``antispam serve --backend local`` from ``source`` on a tiny windowed model version."""
    sys.path.insert(0, str(REPO))
    from antispam.features import Windowing
    from antispam.testing.tinymodel import build_version

    build_version(workdir / "models" / "cnn", windowing=Windowing())
    env = dict(os.environ, PYTHONPATH=str(source), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen(
        [sys.executable, "-m", "antispam", "serve", "--backend", "local", "--host", "127.0.0.1",
         "--port", "0", "--model-base", str(workdir / "models"), "--model-name", "cnn",
         "--feedback-db", "", "--cache-size", "0", "--deadline-ms", "60000"],
        cwd=source, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            raise SystemExit(f"antispam serve exited with {proc.returncode}")
        found = re.search(r"ready on (http://127\.0\.0\.1:\d+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
            return proc, found.group(1)
    proc.kill()
    raise SystemExit("antispam serve was not ready in 180 s")


def service(args: argparse.Namespace) -> int:
    texts = make_texts(args.texts, args.chars, args.shape)
    if args.url:
        summary = measure_service(args.url, texts, args.rounds)
    else:
        with tempfile.TemporaryDirectory(prefix="loop-latency-") as tmp:
            proc, url = start_tiny_service(Path(tmp), Path(args.source).resolve())
            try:
                print(f"service from {args.source} at {url} (local backend, tiny windowed model, cache off)")
                summary = measure_service(url, texts, args.rounds)
            finally:
                proc.terminate()
                proc.wait(30)
    if args.json:
        print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("pipeline", "service"):
        p = sub.add_parser(name)
        p.add_argument("--texts", type=int, default=100)
        p.add_argument("--chars", type=int, default=5000)
        p.add_argument("--shape", choices=("block", "punct"), default="block")
        p.add_argument("--rounds", type=int, default=1 if name == "pipeline" else 3)
        p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p = sub.choices["pipeline"]
    p.add_argument("--strategies", nargs="+", default=["idle", "block", "slices", "threads"],
                   choices=("idle", "block", "slices", "threads"))
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(run=pipeline)
    p = sub.choices["service"]
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running service (loopback only)")
    where.add_argument("--tiny", action="store_true", help="start antispam serve on a tiny model")
    p.add_argument("--source", default=str(REPO), help="with --tiny: the checkout to serve from")
    p.set_defaults(run=service)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
