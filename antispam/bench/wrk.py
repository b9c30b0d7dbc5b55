"""wrk (Debian's ``wrk`` package) as an alternative saturation driver.

Why offer it: on a 2-core machine the load generator competes with the service for CPU. wrk is
C with an event loop per thread and costs a fraction of what the asyncio generator does per
request, so at saturation it takes less CPU away from the service. It is closed loop only (it
cannot hold a fixed rate without coordinated omission), so fixed-rate rows always use the
asyncio generator. The Lua script cycles through the same pre-encoded requests and reports wrk's
own latency percentiles as JSON from its ``done`` hook. Responses are not parsed: only non-2xx
statuses and socket errors count as errors.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from antispam.bench.load import LoadResult, LoadSpec, build_requests, loopback_address
from antispam.errors import UserError

MARK = "WRK-JSON "

_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50": %f, "p95": %f, "p99": %f, "max": %f, "mean": %f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
"""


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise UserError("--driver wrk needs wrk on PATH (apt-get install wrk)")
    return path


def _long_string(text: str) -> str:
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def lua_script(spec: LoadSpec) -> str:
    """A script that sends the spec's requests in turn (bodies and paths are pure ASCII)."""
    host, port = loopback_address(spec.url)
    items = []
    for raw, _messages in build_requests(host, port, spec.texts, spec.kind, spec.batch):
        head, _, body = raw.partition(b"\r\n\r\n")
        target = head.split(b" ", 2)[1].decode("ascii")
        items.append(target if spec.kind == "get" else body.decode("utf-8"))
    # JSON bodies from build_requests keep non-ASCII text; wrk sends bytes as given, so re-encode
    # them as escaped JSON to keep the script ASCII.
    if spec.kind == "post":
        items = [json.dumps(json.loads(b), ensure_ascii=True) for b in items]
    entries = ",\n".join(_long_string(item) for item in items)
    build = ('wrk.format("GET", item)' if spec.kind == "get" else
             'wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, item)')
    return f"""
local items = {{
{entries}
}}
local requests = {{}}
local counter = 0
function init(args)
  for i, item in ipairs(items) do requests[i] = {build} end
end
function request()
  counter = counter % #requests + 1
  return requests[counter]
end
{_DONE}
"""


def run_wrk(spec: LoadSpec, workdir: Path, threads: int = 1) -> LoadResult:
    """One saturation run with wrk (a warmup run first, when the spec has one)."""
    if spec.mode != "saturation":
        raise UserError("wrk drives saturation runs only; fixed rates use the asyncio generator")
    spec.validate()
    wrk = require_wrk()
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "bench.lua"
    script.write_text(lua_script(spec), encoding="ascii")
    connections = max(spec.connections, threads)
    cpu = [0.0]

    def call(seconds: float) -> dict[str, float]:
        command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                   f"--timeout={max(1, round(spec.timeout))}s", "-s", str(script), spec.url]
        before = os.times()
        proc = subprocess.run(command, capture_output=True, text=True, timeout=seconds + spec.timeout + 30)
        after = os.times()
        cpu[0] = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        for line in proc.stdout.splitlines():
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")

    if spec.warmup >= 0.5:
        call(spec.warmup)
    measured = spec.duration - spec.warmup
    out = call(measured)
    window = out["duration_us"] / 1e6
    socket_errors = int(out["connect"] + out["read"] + out["write"] + out["timeout"])
    ok = int(out["requests"] - out["status"])
    errors = int(out["status"]) + socket_errors
    ms = 1000.0
    kinds = {k: int(out[k]) for k in ("connect", "read", "write", "timeout") if out[k]}
    if out["status"]:
        kinds["http_non_2xx"] = int(out["status"])
    return LoadResult(
        mode="saturation", kind=spec.kind, batch=spec.batch if spec.kind == "post" else 1,
        target_rate=0.0, connections=connections, window_s=round(window, 3), requests=ok + errors,
        ok=ok, errors=errors, messages_ok=ok * (spec.batch if spec.kind == "post" else 1),
        requests_per_s=ok / window, messages_per_s=ok * (spec.batch if spec.kind == "post" else 1) / window,
        latency_ms={"p50": out["p50"] / ms, "p95": out["p95"] / ms, "p99": out["p99"] / ms,
                    "max": out["max"] / ms, "mean": out["mean"] / ms, "count": float(out["requests"])},
        statuses={}, error_kinds=kinds, sent_total=int(out["requests"]),
        client_cpu_percent=100.0 * cpu[0] / max(1e-9, window),
    )
