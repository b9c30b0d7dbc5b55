"""An asyncio HTTP/1.1 load generator over keep-alive connections, run in its own process.

Why our own and not a library client: the bench must measure the service, not the client, so
requests are pre-encoded bytes written on raw asyncio streams (no per-request header building,
no pooling logic), and the generator runs in a separate process (``python -m
antispam.bench.load SPEC OUT``) so its CPU is never charged to the service.

Two modes:

* ``rate`` (open loop): request *i* is due at ``start + i / rate`` whatever happened to earlier
  requests. Its latency is measured from that scheduled time, not from when a connection became
  free, so a stalled service shows up as queueing latency instead of silently lowering the
  offered load ("coordinated omission").
* ``saturation`` (closed loop): each connection sends its next request as soon as the previous
  answer arrives; the completed rate is the service's capacity at that concurrency.

Every run is bounded: at most ``max_requests`` requests, and a hard stop at
``duration + timeout`` seconds after the start, after which anything unfinished counts as an
error. Only loopback addresses are accepted as targets.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from antispam.bench.stats import summarize
from antispam.errors import UserError

KINDS = ("get", "post")
MODES = ("rate", "saturation")


@dataclass
class LoadSpec:
    """What one load run does; JSON-serializable so it can be handed to the generator process."""

    url: str
    texts: list[str]
    kind: str = "get"  # "get": GET /predict?text=, one text; "post": POST /predict {"texts": [...]}
    batch: int = 1  # texts per POST
    mode: str = "saturation"
    rate: float = 0.0  # requests per second, mode "rate"
    duration: float = 5.0  # seconds of load, including warmup
    warmup: float = 0.0  # first seconds not recorded
    connections: int = 16
    timeout: float = 5.0  # per request, seconds
    max_requests: int = 1_000_000
    verify: bool = True  # parse each 200 body and check it has one result per text
    explain: bool = False  # ask for explain=true (query for GET, body for POST)

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"load kind must be one of {KINDS}, got {self.kind!r}")
        if self.mode not in MODES:
            raise UserError(f"load mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "rate" and self.rate <= 0:
            raise UserError("a fixed-rate run needs a rate > 0")
        if not self.texts:
            raise UserError("no texts to send")
        if self.batch < 1 or self.connections < 1:
            raise UserError("batch and connections must be >= 1")
        if not 0 < self.duration <= 3600 or not 0 <= self.warmup < self.duration:
            raise UserError("duration must be within (0, 3600] s and warmup shorter than it")
        if self.timeout <= 0 or self.max_requests < 1:
            raise UserError("timeout and max_requests must be positive")
        loopback_address(self.url)


@dataclass
class LoadResult:
    """Counts and latency summary of the recorded window (milliseconds)."""

    mode: str
    kind: str
    batch: int
    target_rate: float
    connections: int
    window_s: float
    requests: int  # recorded requests that got an answer or failed
    ok: int
    errors: int
    messages_ok: int
    requests_per_s: float
    messages_per_s: float
    latency_ms: dict[str, float]
    statuses: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    sent_total: int = 0  # including warmup
    client_cpu_percent: float | None = None  # the generator's own CPU (of one core) while it ran

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def loopback_address(url: str) -> tuple[str, int]:
    """``(host, port)`` of an ``http://`` URL whose host resolves only to loopback addresses.

    The bench and the fault tests may only ever load this machine; refusing anything else here
    means no flag or typo can point the generator elsewhere.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise UserError(f"bench target must be an http:// URL, got {url!r}")
    port = parts.port or 80
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"cannot resolve {parts.hostname!r}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_loopback:
            raise UserError(f"bench targets loopback addresses only; {parts.hostname} is {address}")
    return parts.hostname, port


def build_requests(host: str, port: int, texts: Sequence[str], kind: str, batch: int,
                   explain: bool = False) -> list[tuple[bytes, int]]:
    """Pre-encoded requests and how many messages each carries (``explain``: each asks for
    ``explain=true``)."""
    head = f"Host: {host}:{port}\r\nUser-Agent: antispam-bench\r\n"
    out: list[tuple[bytes, int]] = []
    if kind == "get":
        for text in texts:
            target = "/predict?text=" + urllib.parse.quote(text, safe="") + ("&explain=true" if explain else "")
            out.append((f"GET {target} HTTP/1.1\r\n{head}\r\n".encode("ascii"), 1))
        return out
    # Wrap around so every POST carries exactly ``batch`` texts.
    count = max(1, len(texts) // batch)
    for i in range(count):
        chunk = [texts[(i * batch + j) % len(texts)] for j in range(batch)]
        payload: dict[str, Any] = {"texts": chunk, "explain": True} if explain else {"texts": chunk}
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        request = (f"POST /predict HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body
        out.append((request, batch))
    return out


class ProtocolError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time (no pipelining)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> "Connection":
        reader, writer = await asyncio.open_connection(host, port, limit=8 * 1024 * 1024)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes, bool]:
        """Send one request; return status, body and whether the server keeps the connection."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise ProtocolError(f"bad status line {lines[0]!r}") from exc
        length: int | None = None
        chunked = False
        keep_alive = True
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.strip().lower() == "close":
                keep_alive = False
        if chunked:
            body = await self._read_chunked()
        elif length is not None:
            body = await self.reader.readexactly(length)
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            body = await self.reader.read()
            keep_alive = False
        return status, body, keep_alive

    async def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        self.writer.close()


class _Recorder:
    """Collects outcomes that fall inside the recording window."""

    def __init__(self, window_start: float) -> None:
        self.window_start = window_start
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.error_kinds: dict[str, int] = {}
        self.ok = 0
        self.errors = 0
        self.messages_ok = 0
        self.sent_total = 0

    def record(self, stamp: float, latency: float, status: int | None, error: str | None, messages: int) -> None:
        if stamp < self.window_start:
            return
        self.latencies.append(latency * 1000.0)
        if status is not None:
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if error is None:
            self.ok += 1
            self.messages_ok += messages
        else:
            self.errors += 1
            self.error_kinds[error] = self.error_kinds.get(error, 0) + 1


def _check_body(body: bytes, messages: int, kind: str, explain: bool = False) -> bool:
    try:
        data = json.loads(body)["data"]
    except (ValueError, KeyError, TypeError):
        return False
    if kind == "get":
        return isinstance(data, dict) and "predict" in data and (not explain or "reasons" in data)
    return isinstance(data, list) and len(data) == messages and (
        not explain or all(isinstance(item, dict) and "reasons" in item for item in data))


async def _exchange(conn_holder: list[Connection | None], host: str, port: int, raw: bytes,
                    messages: int, spec: LoadSpec) -> tuple[int | None, str | None]:
    """One request on the worker's connection, reconnecting as needed; (status, error kind)."""
    try:
        conn = conn_holder[0]
        if conn is None:
            conn = await asyncio.wait_for(Connection.open(host, port), spec.timeout)
            conn_holder[0] = conn
        status, body, keep_alive = await asyncio.wait_for(conn.request(raw), spec.timeout)
    except asyncio.TimeoutError:
        _drop(conn_holder)
        return None, "timeout"
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError, ValueError):
        _drop(conn_holder)
        return None, "connection"
    if not keep_alive:
        _drop(conn_holder)
    if status != 200:
        return status, f"http_{status}"
    if spec.verify and not _check_body(body, messages, spec.kind, spec.explain):
        return status, "bad_body"
    return status, None


def _drop(conn_holder: list[Connection | None]) -> None:
    if conn_holder[0] is not None:
        conn_holder[0].close()
        conn_holder[0] = None


async def run_load(spec: LoadSpec) -> LoadResult:
    """Drive the target per ``spec`` and summarize the recorded window."""
    spec.validate()
    host, port = loopback_address(spec.url)
    requests = build_requests(host, port, spec.texts, spec.kind, spec.batch, spec.explain)
    loop = asyncio.get_running_loop()
    cpu_start, wall_start = time.process_time(), loop.time()
    start = loop.time() + 0.05
    window_start = start + spec.warmup
    end = start + spec.duration
    hard_stop = end + spec.timeout
    recorder = _Recorder(window_start)

    if spec.mode == "rate":
        await _open_loop(spec, requests, recorder, host, port, start, end, hard_stop)
    else:
        await _closed_loop(spec, requests, recorder, host, port, start, end, hard_stop)

    window = max(1e-9, min(loop.time(), end) - window_start)
    if spec.mode == "rate":
        window = spec.duration - spec.warmup  # the offered window, not when stragglers landed
    return LoadResult(
        mode=spec.mode, kind=spec.kind, batch=spec.batch if spec.kind == "post" else 1,
        target_rate=spec.rate, connections=spec.connections, window_s=round(window, 3),
        requests=recorder.ok + recorder.errors, ok=recorder.ok, errors=recorder.errors,
        messages_ok=recorder.messages_ok,
        requests_per_s=recorder.ok / window, messages_per_s=recorder.messages_ok / window,
        latency_ms=summarize(recorder.latencies), statuses=recorder.statuses,
        error_kinds=recorder.error_kinds, sent_total=recorder.sent_total,
        client_cpu_percent=100.0 * (time.process_time() - cpu_start) / max(1e-9, loop.time() - wall_start),
    )


async def _open_loop(spec: LoadSpec, requests: list[tuple[bytes, int]], recorder: _Recorder,
                     host: str, port: int, start: float, end: float, hard_stop: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    total = min(spec.max_requests, int(spec.rate * spec.duration))

    async def worker() -> None:
        holder: list[Connection | None] = [None]
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                i, scheduled = item
                raw, messages = requests[i % len(requests)]
                if loop.time() >= hard_stop:
                    recorder.record(scheduled, loop.time() - scheduled, None, "deadline", messages)
                    continue
                recorder.sent_total += 1
                status, error = await _exchange(holder, host, port, raw, messages, spec)
                recorder.record(scheduled, loop.time() - scheduled, status, error, messages)
        finally:
            _drop(holder)

    workers = [asyncio.create_task(worker()) for _ in range(spec.connections)]
    for i in range(total):
        due = start + i / spec.rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, due))
    for _ in workers:
        queue.put_nowait(None)
    await _finish(workers, hard_stop, recorder, queue)


async def _closed_loop(spec: LoadSpec, requests: list[tuple[bytes, int]], recorder: _Recorder,
                       host: str, port: int, start: float, end: float, hard_stop: float) -> None:
    loop = asyncio.get_running_loop()
    counter = iter(range(spec.max_requests))

    async def worker() -> None:
        holder: list[Connection | None] = [None]
        delay = start - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            while loop.time() < end:
                i = next(counter, None)
                if i is None:
                    return
                raw, messages = requests[i % len(requests)]
                sent = loop.time()
                recorder.sent_total += 1
                status, error = await _exchange(holder, host, port, raw, messages, spec)
                recorder.record(sent, loop.time() - sent, status, error, messages)
        finally:
            _drop(holder)

    workers = [asyncio.create_task(worker()) for _ in range(spec.connections)]
    await _finish(workers, hard_stop, recorder, None)


async def _finish(workers: list[asyncio.Task], hard_stop: float, recorder: _Recorder,
                  queue: asyncio.Queue | None) -> None:
    """Wait for the workers until the hard stop; whatever is unfinished then is an error."""
    loop = asyncio.get_running_loop()
    done, pending = await asyncio.wait(workers, timeout=max(0.0, hard_stop - loop.time()))
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        recorder.errors += len(pending)  # in flight at the hard stop
        recorder.error_kinds["deadline"] = recorder.error_kinds.get("deadline", 0) + len(pending)
    if queue is not None:
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None:
                recorder.record(item[1], loop.time() - item[1], None, "deadline", 0)
    for task in done:
        task.result()  # re-raise a bug in the generator itself


def run_in_subprocess(spec: LoadSpec, workdir: Path, python: str = sys.executable,
                      slack: float = 30.0) -> LoadResult:
    """Run one load in a separate Python process and read its result back."""
    import subprocess

    workdir.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.monotonic_ns()}"
    spec_path, out_path = workdir / f"spec-{stamp}.json", workdir / f"result-{stamp}.json"
    spec.validate()
    spec_path.write_text(json.dumps(asdict(spec), ensure_ascii=False), encoding="utf-8")
    try:
        proc = subprocess.run([python, "-m", "antispam.bench.load", str(spec_path), str(out_path)],
                              capture_output=True, text=True,
                              timeout=spec.duration + spec.timeout + slack)
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        data = json.loads(out_path.read_text(encoding="utf-8"))
    finally:
        spec_path.unlink(missing_ok=True)
        out_path.unlink(missing_ok=True)
    return LoadResult(**data)


def main(argv: list[str] | None = None) -> int:
    """``python -m antispam.bench.load SPEC.json OUT.json``: the generator process."""
    from antispam.atomic import atomic_write_json

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m antispam.bench.load SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec = LoadSpec(**json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    try:
        result = asyncio.run(run_load(spec))
    except UserError as exc:
        print(f"load: error: {exc}", file=sys.stderr)
        return 2
    atomic_write_json(argv[1], result.to_dict())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
