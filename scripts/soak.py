#!/usr/bin/env python
"""Soak test: GET /predict at a fixed fraction of measured capacity for minutes; RSS over time.

Not part of CI (it runs for 10 minutes by default). It starts ``antispam serve`` (local backend,
2 workers, dedup cache off so every request runs the pipeline), measures capacity with a short
saturation run unless --capacity is given, then drives GET /predict open loop at --fraction of
it in back-to-back chunks, printing one line per chunk: throughput, latency, errors, and the
service's RSS and PSS (all processes). A leak shows as RSS growing chunk after chunk; the summary
gives the growth between the first and the last chunk and a least-squares slope.

    python scripts/soak.py --model-base models --minutes 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import tempfile
from pathlib import Path

from antispam.bench import procstats, report, scenarios
from antispam.bench.load import LoadSpec, run_in_subprocess
from antispam.commands.bench import load_texts
from antispam.errors import UserError


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-base", default=os.environ.get("ANTISPAM_MODEL_BASE", "models"))
    p.add_argument("--model-name", default="cnn")
    p.add_argument("--data", help="corpus (default $ANTISPAM_DATA)")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--fraction", type=float, default=0.5, help="of measured capacity (default 0.5)")
    p.add_argument("--capacity", type=float, help="requests/s to take as capacity (skip measuring)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk", type=float, default=30.0, help="seconds per reported line (default 30)")
    p.add_argument("--json", dest="json_path", help="default bench-results/soak-<timestamp>.json")
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the service and the generator are stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not (0 < args.fraction <= 1 and args.minutes > 0 and args.chunk >= 5):
        raise UserError("--fraction must be in (0, 1], --minutes > 0, --chunk >= 5")

    started = dt.datetime.now()
    texts = load_texts(args.data, 0)
    service = scenarios.Service(f"local-{args.workers}w", "local", args.workers)
    rows = []
    with tempfile.TemporaryDirectory(prefix="antispam-soak-") as tmp:
        workdir = Path(tmp)
        with scenarios.ServiceProcess(service, model_base=args.model_base, model_name=args.model_name,
                                      workdir=workdir, cache_size=0) as proc:
            capacity = args.capacity
            if capacity is None:
                sat = run_in_subprocess(LoadSpec(url=proc.url, texts=texts, mode="saturation", duration=12,
                                                 warmup=2, connections=32), workdir)
                capacity = sat.requests_per_s
                print(f"measured capacity: {capacity:.0f} req/s (saturation, 32 connections, "
                      f"{sat.errors} errors, p99 {sat.latency_ms['p99']:.1f} ms)", flush=True)
            rate = args.fraction * capacity
            chunks = max(1, round(args.minutes * 60 / args.chunk))
            print(f"soak: {rate:.0f} req/s for {chunks} x {args.chunk:.0f} s on {service.name} "
                  f"(pid {proc.pid})", flush=True)
            print(f"{'t s':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>8} {'errors':>6} "
                  f"{'RSS MB':>7} {'PSS MB':>7}", flush=True)
            elapsed = 0.0
            for _ in range(chunks):
                sampler = procstats.Sampler(proc.pid, interval=1.0).start()
                result = run_in_subprocess(LoadSpec(url=proc.url, texts=texts, mode="rate", rate=rate,
                                                    duration=args.chunk, connections=64), workdir)
                usage = sampler.stop()
                elapsed += args.chunk
                row = {"t_s": elapsed, "requests_per_s": result.requests_per_s, "errors": result.errors,
                       "error_kinds": result.error_kinds, "latency_ms": result.latency_ms,
                       "rss_mb": usage.rss_mb, "pss_mb": usage.pss_mb, "cpu_percent": usage.cpu_percent}
                rows.append(row)
                lat = result.latency_ms
                print(f"{elapsed:6.0f} {result.requests_per_s:7.0f} {lat['p50']:7.1f} {lat['p99']:7.1f} "
                      f"{lat['max']:8.1f} {result.errors:6d} {usage.rss_mb:7.0f} "
                      f"{usage.pss_mb if usage.pss_mb is not None else float('nan'):7.0f}", flush=True)
            code = proc.stop()

    times = [r["t_s"] / 60 for r in rows]
    rss = [r["rss_mb"] for r in rows]
    errors = sum(r["errors"] for r in rows)
    summary = {
        "rate": rate, "capacity": capacity, "chunks": len(rows), "errors": errors,
        "rss_first_mb": rss[0], "rss_last_mb": rss[-1], "rss_growth_mb": rss[-1] - rss[0],
        "rss_slope_mb_per_min": slope(times, rss), "exit_code": code,
    }
    print(f"\nerrors: {errors}; RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB ({rss[-1] - rss[0]:+.0f} MB, "
          f"slope {summary['rss_slope_mb_per_min']:+.2f} MB/min); exit code on SIGTERM {code}")
    path = Path(args.json_path) if args.json_path else Path(report.RESULT_DIR) / f"soak-{started:%Y%m%d-%H%M%S}.json"
    report.write_json(path, {"schema": "antispam-soak/1", "started": started.isoformat(timespec="seconds"),
                             "host": report.host_info(), "config": vars(args), "summary": summary, "rows": rows})
    print(f"results written to {path}")
    return 0 if errors == 0 and code == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        sys.exit(2)
