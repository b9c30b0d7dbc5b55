"""CPU per single-text GET /predict, with the model taken out or kept in: where the overhead is.

    python scripts/get_overhead.py [--backend fake|local] [--loop asyncio|uvloop] [--tokenizer auto|jieba]
                                   [--seconds 8] [--connections 16] [--texts 1500] [--rounds 3]

Starts one service process (the real app of ``antispam.app.make_app``, one worker, dedup cache
off) and drives it at saturation with the bench's own load generator (a separate process,
keep-alive connections, the corpus' test texts) for ``--seconds``; prints the service's CPU
time per answered request (user + system, from /proc) and requests/s. ``--backend bare`` is the
floor: a bare Tornado handler answering a fixed JSON body (no normalizing, no tokenizer);
``--backend fake`` answers every text from a constant-time fake (antispam/testing/fakes.py) with no micro-batcher,
so the figure is HTTP + JSON + normalize + tokenizer + bookkeeping; ``local`` is the in-process
backend on ``--model-base``/``--model-name`` (micro-batcher, TensorFlow, windows). Several
``--loop``/``--tokenizer`` values are run round-robin, ``--rounds`` times each, so a neighbour's
load falls on all of them alike; the median per configuration is printed.

CPU per request is what the bench's "CPU/msg" column reports for the GET rows; this script exists
to compare one change at a time quickly (a bench run takes minutes). Needs ``ANTISPAM_DATA``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVER = r"""
import asyncio, json, os, sys
import tornado.httpserver
sys.path.insert(0, {root!r})
from antispam.app import make_app
from antispam.http.server import HTTPServer, server_options
from antispam.config import ServeConfig
from antispam.text import Segmenter

async def main():
    config = ServeConfig(port=0, host="127.0.0.1", backend={backend!r}, model_base={model_base!r},
                         model_name={model_name!r}, cache_size=0)
    if {backend!r} == "bare":  # the floor: Tornado answering a fixed JSON body, nothing else
        import tornado.web
        class Bare(tornado.web.RequestHandler):
            def get(self):
                self.get_query_argument("text", "")
                self.set_header("Content-Type", "application/json; charset=UTF-8")
                self.finish(b'{{"data":{{"spam_probability":0.5,"suggestion":"review"}}}}')
        routes = [("/predict", Bare), ("/readyz", Bare)]
        server = tornado.httpserver.HTTPServer(tornado.web.Application(routes, log_function=lambda h: None))
        server.listen(0, "127.0.0.1")
        port = next(iter(server._sockets.values())).getsockname()[1]
        print(json.dumps({{"port": port}}), flush=True)
        await asyncio.Event().wait()
    if {backend!r} == "fake":
        from antispam.testing.fakes import FakeBackend
        backend = FakeBackend()
    else:
        from antispam.backends.local import LocalBackend
        backend = LocalBackend(config)
    await backend.start()
    app = make_app(config, backend, segmenter=Segmenter())
    server = HTTPServer(app, **server_options(config))
    server.listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    print(json.dumps({{"port": port}}), flush=True)
    if os.environ.get("OVERHEAD_PYSPY"):  # sample this process while the load runs
        import subprocess
        subprocess.Popen([os.environ["OVERHEAD_PYSPY"], "record", "-r", "500", "-d", "9", "--nonblocking",
                          "-f", "raw", "-o", os.environ["OVERHEAD_PYSPY_OUT"], "-p", str(os.getpid())],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.Event().wait()

if {loop!r} == "uvloop":
    import uvloop
    uvloop.install()
asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(args: argparse.Namespace, texts: list[str], loop: str, tokenizer: str, workdir: Path) -> dict:
    from antispam.bench.load import LoadSpec, run_in_subprocess

    code = SERVER.format(root=str(ROOT), backend=args.backend, model_base=args.model_base,
                         model_name=args.model_name, loop=loop)
    env = {**os.environ, "ANTISPAM_TOKENIZER": tokenizer, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):  # the local backend loads its version in the background
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.1)
        warm = LoadSpec(url=url, texts=texts, kind="get", mode="saturation", duration=1.5,
                        connections=args.connections, verify=args.backend != "bare")
        run_in_subprocess(warm, workdir)
        before = cpu_seconds(proc.pid)
        spec = LoadSpec(url=url, texts=texts, kind="get", mode="saturation", duration=args.seconds,
                        connections=args.connections, verify=args.backend != "bare")
        result = run_in_subprocess(spec, workdir)
        cpu = cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(10)
    answered = result.ok
    return {"loop": loop, "tokenizer": tokenizer, "requests_per_s": result.requests_per_s,
            "cpu_us_per_request": 1e6 * cpu / max(answered, 1), "errors": result.errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("bare", "fake", "local"), default="fake")
    parser.add_argument("--loop", default="asyncio", help="comma-separated: asyncio, uvloop")
    parser.add_argument("--tokenizer", default="auto", help="comma-separated: auto, jieba")
    parser.add_argument("--model-base", default="models")
    parser.add_argument("--model-name", default="cnn")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--texts", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from antispam.data import load_split

    texts = [s.text for s in load_split(os.environ.get("ANTISPAM_DATA"), progress=False).test][:args.texts]
    configs = list(itertools.product(args.loop.split(","), args.tokenizer.split(",")))
    runs: dict[tuple[str, str], list[dict]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for loop, tokenizer in configs:
                runs[(loop, tokenizer)].append(one_run(args, texts, loop, tokenizer, Path(tmp)))
    print(f"backend {args.backend}, 1 worker, GET at saturation with {args.connections} connections, "
          f"{args.seconds:g} s x {args.rounds} rounds; load average {os.getloadavg()[0]:.2f}")
    print(f"{'loop':<9}{'tokenizer':<11}{'req/s':>8}{'CPU µs/request':>16}{'errors':>8}"
          "   (median of rounds; all rounds)")
    for (loop, tokenizer), results in runs.items():
        cpu = [r["cpu_us_per_request"] for r in results]
        rps = [r["requests_per_s"] for r in results]
        print(f"{loop:<9}{tokenizer:<11}{statistics.median(rps):8.0f}{statistics.median(cpu):16.0f}"
              f"{sum(r['errors'] for r in results):8d}   {', '.join(f'{c:.0f}' for c in cpu)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
