"""Figures for the remote frontend: import cost without TensorFlow, and gRPC vs REST latency.

    /work/venv/bin/python tests/measure_remote.py [--requests 200] [--batches 50]

1. Import time and resident memory of a fresh process that imports the gRPC/REST/fallback
   backends (no TensorFlow), of one that also starts a FallbackBackend and scores a text, and of
   one that imports TensorFlow — median of three runs each.
2. Latency of one text and of a 64-text batch through GrpcBackend and RestBackend against the
   stand-in TF Serving (tests/standin_tfs.py, tiny model), sequential requests, plus the
   client-side cost of building each request. The stand-in runs TensorFlow in Python and parses
   REST JSON with Python's json module, which real TF Serving does in C++: its REST figures
   overstate TF Serving's own REST cost; the client-side figures are ours alone.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

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
        backend = make_backend(ServeConfig(backend="auto", model_base=sys.argv[1], model_name="cnn",
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


async def latency(backend_cls: type, config: object, batch: list[list[str]], n: int) -> list[float]:
    backend = backend_cls(config)
    await backend.start()
    try:
        for _ in range(10):
            await backend.predict(batch, timeout=10)
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            await backend.predict(batch, timeout=10)
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        await backend.close()


def client_cost(batch: list[list[str]], vectors: object, n: int = 50) -> dict[str, float]:
    from antispam.backends.grpc import GrpcBackend
    from antispam.backends.rest import RowEncoder
    from antispam.config import ServeConfig

    grpc_backend = GrpcBackend(ServeConfig())
    started = time.perf_counter()
    for _ in range(n):
        grpc_backend.build_request(vectors.featurize_batch(batch), 1).SerializeToString()
    grpc_ms = (time.perf_counter() - started) / n * 1000
    encoder = RowEncoder(vectors)
    encoder.body(batch)
    started = time.perf_counter()
    for _ in range(n):
        encoder.body(batch)
    rest_ms = (time.perf_counter() - started) / n * 1000
    started = time.perf_counter()
    for _ in range(n):  # what printing the tensor without the row cache costs
        json.dumps({"instances": vectors.featurize_batch(batch).tolist()})
    plain_ms = (time.perf_counter() - started) / n * 1000
    return {"grpc_build_ms": grpc_ms, "rest_cached_json_ms": rest_ms, "rest_plain_json_ms": plain_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="single-text requests per protocol")
    parser.add_argument("--batches", type=int, default=50, help="64-text batches per protocol")
    args = parser.parse_args()

    from antispam.backends.grpc import GrpcBackend
    from antispam.backends.rest import RestBackend
    from antispam.config import ServeConfig
    from antispam.text import tokenize
    from standin_tfs import StandinTFS
    from tinymodel import PASS_TEXT, SPAM_TEXT, build_version, tiny_vectors

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "models"
        tfs = StandinTFS(base, poll=0.5, log_path=Path(tmp) / "standin.log")
        tfs.launch()
        build_version(base / "cnn")
        tfs.wait_ready().wait_until("cnn", 1)
        try:
            print("== imports (fresh process, median of 3) ==")
            for label, code, extra in (
                ("remote backends (grpc, rest, fallback, factory)", IMPORT_REMOTE, ()),
                ("remote frontend: auto -> FallbackBackend, start, 1 predict", SERVE_REMOTE,
                 (str(base), tfs.grpc_target, tfs.rest_url)),
                ("import tensorflow", IMPORT_TF, ()),
            ):
                r = child(code, *extra)
                print(f"{label:62s} {r['seconds']:6.2f} s  RSS {r['rss_mb']:6.0f} MB  tensorflow={r['tensorflow']}")

            config = ServeConfig(model_base=str(base), model_name="cnn", tfs_grpc=tfs.grpc_target,
                                 tfs_rest=tfs.rest_url, poll_seconds=60)
            one = [tokenize(SPAM_TEXT)]
            many = [tokenize(SPAM_TEXT if i % 2 else PASS_TEXT) for i in range(64)]
            print("== latency against the stand-in (sequential, tiny model) ==")
            for label, batch, n in (("1 text", one, args.requests), ("64 texts", many, args.batches)):
                for cls in (GrpcBackend, RestBackend):
                    samples = asyncio.run(latency(cls, config, batch, n))
                    print(f"{cls.name:5s} {label:9s} {percentiles(samples)}")
            print("== client-side request building, 64 texts (mean) ==")
            for key, value in client_cost(many, tiny_vectors()).items():
                print(f"{key:22s} {value:7.2f} ms")
        finally:
            tfs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
