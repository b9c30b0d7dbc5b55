"""Figures for the remote frontend: import cost without TensorFlow, and gRPC vs REST latency.

    python scripts/measure_remote.py [--model-base models] [--model-name cnn] [--requests 200] [--batches 50]

1. Import time and resident memory of a fresh process that imports the gRPC/REST/fallback
   backends (no TensorFlow), of one that also starts a FallbackBackend and scores a text, and of
   one that imports TensorFlow — median of ``--runs`` runs each (default 3).
2. Latency of one text and of a 64-text batch through GrpcBackend and RestBackend against the
   stand-in TF Serving (:mod:`antispam.testing.standin_tfs`) serving the newest version of
   ``--model-base/--model-name`` (default ``$ANTISPAM_MODEL_BASE``, else ``models/`` of this
   checkout, and ``cnn``), sequential requests, plus the client-side cost of building each
   request, and the TCP connections each protocol opened per 1,000 requests (REST: counted by
   the stand-in's REST server as it accepts them; gRPC: distinct client ports seen connected to
   the stand-in's gRPC port, sampled every 10 requests). The latencies include the model's own
   time on that version. The stand-in runs
   TensorFlow in Python and parses REST JSON with Python's json module, which real TF Serving
   does in C++: its REST figures overstate TF Serving's own REST cost; the client-side figures
   are ours alone.

Needs the ``[local]`` extra (TensorFlow, tensorflow-serving-api) for the stand-in, and an
exported version (``antispam train cnn``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPAM_TEXT = "代开发票，优惠贷款，加微信13800138000"
PASS_TEXT = "妈妈，我们明天回家吃晚饭"

RSS = "int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS'))) / 1024"

IMPORT_REMOTE = textwrap.dedent(f"""
    import json, sys, time
    t = time.perf_counter()
    import antispam.backends.fallback, antispam.backends.factory, antispam.backends.grpc, antispam.backends.rest
    print(json.dumps({{"seconds": time.perf_counter() - t, "rss_mb": {RSS},
                      "tensorflow": "tensorflow" in sys.modules}}))
""")

IMPORT_TF = textwrap.dedent(f"""
    import json, sys, time
    t = time.perf_counter()
    import tensorflow
    print(json.dumps({{"seconds": time.perf_counter() - t, "rss_mb": {RSS}, "tensorflow": True}}))
""")

SERVE_REMOTE = textwrap.dedent(f"""
    import asyncio, json, sys, time
    t = time.perf_counter()
    from antispam.backends.factory import make_backend
    from antispam.config import ServeConfig
    from antispam.text import tokenize
    async def main():
        backend = make_backend(ServeConfig(backend="auto", model_base=sys.argv[1], model_name=sys.argv[4],
                                           tfs_grpc=sys.argv[2], tfs_rest=sys.argv[3]))
        await backend.start()
        await backend.predict([tokenize("代开发票")], timeout=5)
        await backend.close()
        return type(backend).__name__
    name = asyncio.run(main())
    print(json.dumps({{"seconds": time.perf_counter() - t, "rss_mb": {RSS}, "backend": name,
                      "tensorflow": "tensorflow" in sys.modules}}))
""")


def child(code: str, *args: str, runs: int = 3) -> dict[str, float]:
    results = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    out = dict(results[0])
    for key in ("seconds", "rss_mb"):
        out[key] = statistics.median(r[key] for r in results)
    return out


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return f"p50 {p(0.5):7.2f} ms  p90 {p(0.9):7.2f} ms  p99 {p(0.99):7.2f} ms  (n={len(ms)})"


def established_ports(server_port: int) -> set[int]:
    """Local ports of this machine's ESTABLISHED TCP connections to ``server_port`` (client side)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, remote, state = fields[1], fields[2], fields[3]
                    if state == "01" and int(remote.rsplit(":", 1)[1], 16) == server_port:
                        ports.add(int(local.rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


async def latency(backend_cls: type, config: Any, batch: list[list[str]], n: int,
                  tfs: Any) -> tuple[list[float], int]:
    """Sequential predict times, and the TCP connections opened from ``start()`` on (its status
    look, 10 warm-up and ``n`` timed requests)."""
    backend = backend_cls(config)
    grpc_port = int(tfs.grpc_target.rsplit(":", 1)[1])
    before = tfs.rest_connections()
    await backend.start()
    try:
        seen = established_ports(grpc_port)
        for _ in range(10):
            await backend.predict(batch, timeout=10)
        samples = []
        for i in range(n):
            started = time.perf_counter()
            await backend.predict(batch, timeout=10)
            samples.append(time.perf_counter() - started)
            if i % 10 == 9:
                seen |= established_ports(grpc_port)
        if backend_cls.name == "rest":
            opened = tfs.rest_connections() - before - 1  # less the count query's own connection
        else:
            opened = len(seen)
        return samples, opened
    finally:
        await backend.close()


def client_cost(batch: list[list[str]], featurizer: Any, n: int = 50) -> dict[str, float]:
    from antispam.backends.grpc import GrpcBackend
    from antispam.backends.rest import RowEncoder
    from antispam.config import ServeConfig

    grpc_backend = GrpcBackend(ServeConfig())
    started = time.perf_counter()
    for _ in range(n):
        grpc_backend.build_request(featurizer.rows(featurizer.plan(batch)), 1).SerializeToString()
    grpc_ms = (time.perf_counter() - started) / n * 1000
    encoder = RowEncoder(featurizer.vectors)
    encoder.body(featurizer.plan(batch))
    started = time.perf_counter()
    for _ in range(n):
        encoder.body(featurizer.plan(batch))
    rest_ms = (time.perf_counter() - started) / n * 1000
    started = time.perf_counter()
    for _ in range(n):  # what printing the tensor without the row cache costs
        json.dumps({"instances": featurizer.rows(featurizer.plan(batch)).tolist()})
    plain_ms = (time.perf_counter() - started) / n * 1000
    return {"grpc_build_ms": grpc_ms, "rest_cached_json_ms": rest_ms, "rest_plain_json_ms": plain_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base", type=Path,
                        default=Path(os.environ.get("ANTISPAM_MODEL_BASE", REPO / "models")),
                        help="folder holding <model-name>/<version>/ (default $ANTISPAM_MODEL_BASE, "
                        "else models/ of this checkout)")
    parser.add_argument("--model-name", default="cnn", help="model whose newest version is served (default cnn)")
    parser.add_argument("--requests", type=int, default=200, help="single-text requests per protocol")
    parser.add_argument("--batches", type=int, default=50, help="64-text batches per protocol")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per import figure (median)")
    args = parser.parse_args()

    from antispam import versions
    from antispam.backends.grpc import GrpcBackend
    from antispam.backends.rest import RestBackend
    from antispam.config import ServeConfig
    from antispam.testing.standin_tfs import StandinTFS
    from antispam.text import tokenize

    source = versions.model_dir(args.model_base, args.model_name).resolve()
    version = versions.latest_version(source)
    if version is None:
        parser.error(f"no complete model version under {source} (train one: antispam train "
                     f"{args.model_name}, or give --model-base/--model-name)")
    featurizer = versions.load_assets(source, version).featurizer

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "models"  # the stand-in serves this model only, never the rest of the folder
        base.mkdir()
        (base / args.model_name).symlink_to(source, target_is_directory=True)
        tfs = StandinTFS(base, poll=0.5, log_path=Path(tmp) / "standin.log")
        tfs.start().wait_until(args.model_name, version, timeout=120)
        try:
            print(f"== {args.model_name} version {version} from {source} ==")
            print(f"== imports (fresh process, median of {args.runs}) ==")
            for label, code, extra in (
                ("remote backends (grpc, rest, fallback, factory)", IMPORT_REMOTE, ()),
                ("remote frontend: auto -> FallbackBackend, start, 1 predict", SERVE_REMOTE,
                 (str(base), tfs.grpc_target, tfs.rest_url, args.model_name)),
                ("import tensorflow", IMPORT_TF, ()),
            ):
                r = child(code, *extra, runs=args.runs)
                print(f"{label:62s} {r['seconds']:6.2f} s  RSS {r['rss_mb']:6.0f} MB  tensorflow={r['tensorflow']}")

            config = ServeConfig(model_base=str(base), model_name=args.model_name, tfs_grpc=tfs.grpc_target,
                                 tfs_rest=tfs.rest_url, poll_seconds=60)
            one = [tokenize(SPAM_TEXT)]
            many = [tokenize(SPAM_TEXT if i % 2 else PASS_TEXT) for i in range(64)]
            print("== latency against the stand-in (sequential) ==")
            for label, batch, n in (("1 text", one, args.requests), ("64 texts", many, args.batches)):
                for cls in (GrpcBackend, RestBackend):
                    samples, opened = asyncio.run(latency(cls, config, batch, n, tfs))
                    print(f"{cls.name:5s} {label:9s} {percentiles(samples)}  connections opened {opened:4d} "
                          f"({opened * 1000 / (n + 10):.0f} per 1,000 requests)")
            print("== client-side request building, 64 texts (mean) ==")
            for key, value in client_cost(many, featurizer).items():
                print(f"{key:22s} {value:7.2f} ms")
        finally:
            tfs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
