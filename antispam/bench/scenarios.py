"""What the bench runs: service configurations, the loads driven at each, and the processes.

A *service* is one way to run ``antispam serve`` (backend and worker count); a *load* is one
request kind (GET one text, POST 10 or 100 texts, POST 10 texts of 1,000 characters) at a fixed
rate or at saturation. The bench starts each service as a real subprocess on a free loopback
port (and, for the gRPC backend, the TF Serving stand-in of :mod:`antispam.testing.standin_tfs`,
which needs TensorFlow and tensorflow-serving-api like the local backend), waits until every
worker is ready, drives each load from a separate generator process while sampling the
service's CPU and memory, and stops it with SIGTERM.

The service runs with its dedup cache off (``--cache-size 0``) unless asked otherwise: the test
split has ~1,700 texts, so after one pass every request would be a cache hit and the bench would
measure a dictionary lookup instead of the pipeline.

A load also has a *variant* (:mod:`antispam.bench.variants`): ``plain``, or the same load with
the service's term lists loaded (``lists``: a second service process started with a generated
lists folder) and/or every request asking for ``explain=true`` (``explain``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from antispam.bench import variants
from antispam.errors import UserError
from antispam.testing.standin_tfs import StandinTFS

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Service:
    name: str
    backend: str  # a --backend of antispam serve (the bench uses local and grpc), or "url"
    workers: int


SERVICES: dict[str, Service] = {
    "local-1w": Service("local-1w", "local", 1),
    "local-2w": Service("local-2w", "local", 2),
    "grpc-1w": Service("grpc-1w", "grpc", 1),
    "grpc-2w": Service("grpc-2w", "grpc", 2),
}
DEFAULT_SERVICES = ("local-1w", "local-2w", "grpc-1w")


@dataclass(frozen=True)
class Load:
    request: str  # "get" | "postN" | "postNlong" (N texts of LONG_TEXT_CHARS characters each)
    mode: str  # "rate" | "saturation"
    rate: float = 0.0
    connections: int = 32
    # > 0: a fixed rate of this share of the same service's GET saturation rate, measured
    # earlier in the same run (``rate`` is then set by :func:`drive`), e.g. 0.5 for "50%".
    share: float = 0.0
    variant: str = "plain"  # antispam.bench.variants: plain, lists, explain, lists+explain

    @property
    def kind(self) -> str:
        return "get" if self.request == "get" else "post"

    @property
    def long(self) -> bool:
        """Whether the texts are the long ones built by :func:`long_texts`, not the test texts."""
        return self.request.endswith(LONG_SUFFIX)

    @property
    def text_chars(self) -> int | None:
        """Characters in every text sent (None: the test texts as they are)."""
        return LONG_TEXT_CHARS if self.long else None

    @property
    def batch(self) -> int:
        if self.request == "get":
            return 1
        size = self.request[4:]
        return int(size[:-len(LONG_SUFFIX)] if self.long else size)

    @property
    def label(self) -> str:
        what = "GET 1" if self.request == "get" else f"POST {self.batch}"
        if self.long:
            what += f" {LONG_TEXT_CHARS}-char"
        what = f"{what} @{self.rate:g}/s" if self.mode == "rate" else f"{what} max"
        if self.share:  # the absolute rate differs run to run; the label must not (--compare)
            what = f"{what.rpartition(' @')[0]} @{self.share * 100:g}% of max"
        return what + variants.label_suffix(self.variant)


REQUESTS: tuple[str, ...] = ("get", "post10", "post100")  # every service, unless --requests says otherwise
# Added to the local-backend scenarios by default: 10 texts of 1,000 characters per POST. Each
# such text is ~60 windows (rows) for the model where a test text is ~2, so this row shows what
# long messages cost; one row more (~11 s by default) per local scenario. Not added to the gRPC
# scenarios by default (each such request is ~7 MB of float rows for the model server); an
# explicit --requests still asks for it on every scenario.
LOCAL_REQUESTS: tuple[str, ...] = ("post10long",)
LONG_SUFFIX = "long"
LONG_TEXT_CHARS = 1000
LONG_TEXT_SEPARATOR = "。"
# Connections at saturation: enough concurrency to keep the micro-batcher fed, few enough that
# the latency percentiles still describe a usable service. GET uses 64: with one listening socket
# shared by forked workers the kernel spreads connections unevenly (measured with 32: one worker
# at 82% CPU, the other at 39%), and 64 evens it out. The big POSTs use 12: each worker is busy
# as long as it holds two connections, and SO_REUSEPORT places connections by a hash, so with the
# 4 used before, all four landed on one worker one run in eight (POST 100 at 7,900 msg/s and 109%
# CPU against 12,400 and 181%); with 12, a worker holds fewer than two 0.6% of the time.
SATURATION_CONNECTIONS = {"get": 64, "post10": 16, "post100": 12, "post10long": 12}
RATE_CONNECTIONS = 64


def parse_request(name: str) -> str:
    size = name[4:-len(LONG_SUFFIX)] if name.endswith(LONG_SUFFIX) else name[4:]
    if name == "get" or (name.startswith("post") and size.isdigit() and int(size) >= 1):
        return name
    raise UserError(f"unknown request kind {name!r} (get, post10, post100, postN, post10long, postNlong)")


def plan(requests: tuple[str, ...], rates: tuple[float, ...], connections: int | None = None,
         shares: tuple[float, ...] = ()) -> list[Load]:
    """Fixed rates for single-text GETs (the latency target), saturation for every kind, then
    single-text GETs at ``shares`` of the GET saturation rate just measured (e.g. 0.5: the
    latency spread at half load, issue 14)."""
    loads: list[Load] = []
    if "get" in requests:
        loads.extend(Load("get", "rate", rate, connections or RATE_CONNECTIONS) for rate in rates)
    for request in requests:
        default = SATURATION_CONNECTIONS.get(request, 4 if request.endswith(LONG_SUFFIX) else 8)
        loads.append(Load(request, "saturation", 0.0, connections or default))
    if "get" in requests:
        loads.extend(Load("get", "rate", 0.0, connections or RATE_CONNECTIONS, share) for share in shares)
    return loads


def with_variants(loads: Sequence[Load], names: Sequence[str]) -> list[Load]:
    """Each load once per variant, the variants of one load next to each other (so the table
    shows them side by side)."""
    return [dataclasses.replace(load, variant=name) for load in loads for name in names]


def requests_for(service: Service, requests: tuple[str, ...],
                 local_requests: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The request kinds driven at ``service``: ``requests``, then for the local backend also
    those of ``local_requests`` not among them (by default :data:`LOCAL_REQUESTS`)."""
    if service.backend != "local":
        return requests
    return requests + tuple(r for r in local_requests if r not in requests)


def long_texts(texts: Sequence[str], chars: int = LONG_TEXT_CHARS,
               separator: str = LONG_TEXT_SEPARATOR) -> list[str]:
    """Texts of exactly ``chars`` characters, made of consecutive ``texts`` (deterministic).

    Each long text joins the next unused texts with ``separator`` until it has at least
    ``chars`` characters, then is cut there. Empty texts are skipped; an unfinished last one is
    dropped. Only when the texts run out before the first long text is full do they cycle from
    the first again, so any non-empty input gives at least one.
    """
    if chars < 1:
        raise ValueError("chars must be >= 1")
    pieces = [t for t in texts if t]
    if not pieces:
        raise UserError("no non-empty texts to build long texts from")
    out: list[str] = []
    i = 0
    while i < len(pieces):
        parts, length = [], -len(separator)
        while length < chars and (i < len(pieces) or not out):
            piece = pieces[i % len(pieces)]
            parts.append(piece)
            length += len(separator) + len(piece)
            i += 1
        if length < chars:
            break  # the rest is too short for one more
        out.append(separator.join(parts)[:chars])
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 5.0) -> Any:
    """The JSON body of ``GET url`` (a loopback service's own route), or None if that fails."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def get_text(url: str, timeout: float = 5.0) -> str | None:
    """The body of ``GET url`` as text (``/metrics``), or None if that fails."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return str(response.read().decode("utf-8", "replace"))
    except OSError:
        return None


def decision_counters(url: str) -> dict[str, float] | None:
    """The decision log's written/dropped counters of the service at ``url`` (None: no answer)."""
    text = get_text(url + "/metrics")
    return None if text is None else variants.decision_counters(text)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


class ServiceProcess:
    """``antispam serve`` as a subprocess on 127.0.0.1, ready when every worker says so."""

    def __init__(self, service: Service, *, model_base: str, model_name: str, workdir: Path,
                 cache_size: int = 0, tfs_grpc: str | None = None, tfs_rest: str | None = None,
                 extra_args: tuple[str, ...] = (), ready_timeout: float = 180.0,
                 env: dict[str, str] | None = None) -> None:
        self.service = service
        self.env = dict(env or {})  # added to this process's environment (ANTISPAM_* settings)
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / f"serve-{service.name}-{self.port}.log"
        self.ready_timeout = ready_timeout
        self.command = [
            sys.executable, "-m", "antispam", "serve", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend", service.backend, "--workers", str(service.workers), "--model-base", model_base,
            "--model-name", model_name, "--cache-size", str(cache_size), "--feedback-db", "",
        ]
        if tfs_grpc:
            self.command += ["--tfs-grpc", tfs_grpc]
        if tfs_rest:
            self.command += ["--tfs-rest", tfs_rest]
        self.command += list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> "ServiceProcess":
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", **self.env)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UserError(f"antispam serve ({self.service.name}) exited with "
                                f"{self.process.returncode} while starting:\n{self.log_tail()}")
            if self._ready_workers() >= self.service.workers and http_status(self.url + "/readyz") == 200:
                return self
            time.sleep(0.2)
        self.stop()
        raise UserError(f"antispam serve ({self.service.name}) not ready after {self.ready_timeout:.0f} s:\n"
                        f"{self.log_tail()}")

    def _ready_workers(self) -> int:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if " ready on " in line and "version None" not in line)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the service drains and exits 0), SIGKILL if it does not go in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def __enter__(self) -> "ServiceProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Standin:
    """The TF Serving stand-in for the grpc scenarios, started once and shared by them."""

    def __init__(self, model_base: str, workdir: Path) -> None:
        self.tfs = StandinTFS(model_base, keep=1, poll=1.0, log_path=workdir / "standin.log")

    def __enter__(self) -> Any:
        return self.tfs.start()

    def __exit__(self, *exc: object) -> None:
        self.tfs.stop(graceful=True)


def services_by_name(names: tuple[str, ...]) -> list[Service]:
    out = []
    for name in names:
        if name not in SERVICES:
            raise UserError(f"unknown scenario {name!r} (choose from {', '.join(SERVICES)})")
        out.append(SERVICES[name])
    return out


def drive(service: Service, url: str, pid: int | None, loads: list[Load], texts: list[str], *,
          duration: float, warmup: float, timeout: float, workdir: Path, driver: str = "asyncio",
          service_warmup: float = 0.0, model_server_pid: int | None = None,
          profile_dir: Path | None = None, progress: Any = None,
          earlier: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Run each load against one service; one result record (see report.RESULT_KEYS) each.

    ``service_warmup`` seconds of unrecorded load come first; each row also has its own
    ``warmup`` seconds, not recorded either. ``model_server_pid`` (the TF Serving stand-in) is
    sampled too, so a gRPC row shows where its CPU went. With ``profile_dir``, saturation rows
    are sampled with py-spy (:mod:`antispam.bench.profile`) and carry a ``profile`` breakdown.
    Long loads (``postNlong``) send :func:`long_texts` of ``texts`` instead of ``texts``.
    ``earlier``: rows of this service already run (a share rate looks up their GET saturation
    row), when the loads are driven one call at a time. A ``decisions`` row records what the
    service's decision log wrote and dropped during it (``decision_log``).
    """
    from antispam.bench import procstats
    from antispam.bench.load import LoadSpec, run_in_subprocess

    if service_warmup > 0:
        # Not recorded: first jieba calls, first model calls at each batch size, lazy imports.
        for kind, batch, connections in (("post", 64, 4), ("get", 1, 16)):
            run_in_subprocess(LoadSpec(url=url, texts=texts, kind=kind, batch=batch, mode="saturation",
                                       duration=service_warmup / 2, connections=connections,
                                       timeout=timeout, verify=False), workdir)
    records: list[dict[str, Any]] = []
    long = long_texts(texts) if any(load.long for load in loads) else []
    for load in loads:
        if load.share:
            saturated = [r["requests_per_s"] for r in [*earlier, *records] if r["request"] == "get"
                         and r["mode"] == "saturation" and r["variant"] == load.variant]
            if not saturated:
                raise UserError(f"{load.label} needs the GET saturation row of {service.name} first")
            load = dataclasses.replace(load, rate=max(1.0, round(load.share * saturated[-1])))
        spec = LoadSpec(url=url, texts=long if load.long else texts, kind=load.kind, batch=load.batch,
                        mode=load.mode, rate=load.rate, duration=duration, warmup=warmup,
                        connections=load.connections, timeout=timeout,
                        explain=variants.uses_explain(load.variant))
        log_before = decision_counters(url) if variants.uses_decisions(load.variant) else None
        sampler = procstats.Sampler(pid).start() if pid else None
        model_sampler = procstats.Sampler(model_server_pid).start() if model_server_pid else None
        spies = None
        if profile_dir is not None and pid and load.mode == "saturation":
            from antispam.bench import profile

            slug = f"{service.name}-{load.request}-max"
            spies = profile.start(procstats.tree(pid), duration, profile_dir / slug)
        try:
            if driver == "wrk" and load.mode == "saturation":
                from antispam.bench.wrk import run_wrk

                result, used = run_wrk(spec, workdir), "wrk"
            else:
                result, used = run_in_subprocess(spec, workdir), "asyncio"
        finally:
            usage = sampler.stop() if sampler else None
            model_usage = model_sampler.stop() if model_sampler else None
        record = {
            "scenario": f"{service.name} {load.label}",
            "service": service.name,
            "backend": service.backend,
            "workers": service.workers,
            "request": load.request,
            "variant": load.variant,  # plain, or what the row adds: lists, explain, lists+explain
            "texts_per_request": load.batch,
            "text_chars": load.text_chars,  # None: the test texts as they are
            "mode": load.mode,
            "target_rate": load.rate,
            "connections": load.connections,
            "window_s": result.window_s,
            "requests": result.requests,
            "ok": result.ok,
            "errors": result.errors,
            "requests_per_s": result.requests_per_s,
            "messages_per_s": result.messages_per_s,
            "latency_ms": result.latency_ms,
            "statuses": result.statuses,
            "error_kinds": result.error_kinds,
            "service_cpu_percent": usage.cpu_percent if usage else None,
            "service_rss_mb": usage.rss_mb if usage else None,
            "service_pss_mb": usage.pss_mb if usage else None,
            "fraction_of_limit": None,
            "driver": used,
            "client_cpu_percent": result.client_cpu_percent,
            "model_server_cpu_percent": model_usage.cpu_percent if model_usage else None,
            # What the rest of the machine used meanwhile: on a shared box, a busy neighbour
            # explains a bad row better than the service does.
            "other_cpu_percent": None if usage is None else max(0.0, usage.host_cpu_percent - usage.cpu_percent
                                                              - (result.client_cpu_percent or 0.0)
                                                              - (model_usage.cpu_percent if model_usage else 0.0)),
        }
        if log_before is not None:
            time.sleep(1.0)  # the writer's last batch (it lingers 0.2 s)
            log_after = decision_counters(url)
            record["decision_log"] = None if log_after is None else {
                key: log_after[key] - log_before[key] for key in ("written", "dropped")}
        if spies is not None:
            record["profile"] = profile.components(profile.finish(spies))
        records.append(record)
        if progress is not None:
            progress(record)
    return records
