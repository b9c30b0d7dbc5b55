#!/usr/bin/env python
"""Replay issue 11's hostile-client table against a running service and print pass/fail per row.

Loopback only: it sends aborted uploads, oversize heads, made-up methods and maximal requests,
which is abuse anywhere else. Run it against a service with keys off (the rows send no key);
``--keys-on`` runs only the rows about anonymous access against a service with keys on (issue 21:
an anonymous ``GET /lists`` is refused).
``--feedback-flood`` adds the row that floods ``POST /feedback`` with 5,000-character verdicts
until the daily quota or the store cap refuses them (it writes up to that quota into the
service's feedback store: use a scratch ``--feedback-db``). Feedback provenance (the retrain
merge) is not visible over HTTP: its row points at the test. ``--pid`` (the worker's pid,
e.g. ``pgrep -f 'antispam serve'``) enables the memory row's RSS figures; without it that
row checks only that the service still answers.

    antispam serve --backend local --model-base models &
    python scripts/abuse.py --url http://127.0.0.1:8000 --pid $!
    ANTISPAM_KEYS_FILE=keys.tsv antispam serve --backend local --model-base models --port 8001 &
    python scripts/abuse.py --url http://127.0.0.1:8001 --keys-on

``--lists-dir DIR`` (the service's ``--lists-dir``, a scratch folder: the script writes
``allow.txt``, ``block.txt`` and ``abuse.block.txt`` there and removes them after) adds issue 21's
term-list rows: an allowed phrase appended to an advert must not make it pass (the allow-list
bypass), and a catastrophic pattern must be refused or run in linear time (ReDoS).

    mkdir -p /tmp/abuse-lists && antispam serve --backend local --model-base models \
        --lists-dir /tmp/abuse-lists --lists-poll-seconds 0.5 &
    python scripts/abuse.py --url http://127.0.0.1:8000 --lists-dir /tmp/abuse-lists
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import select
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loop_latency import make_texts, percentile  # noqa: E402

Result = tuple[str, str]  # (outcome: pass | fail | skip | todo, detail)


class Target:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"loopback only: {url}")
        self.host, self.port, self.timeout = parts.hostname, parts.port or 80, timeout

    def raw(self, data: bytes, *, read: bool = True, timeout: float | None = None) -> bytes:
        """Send raw bytes on a new connection; read until the server closes it (or timeout).

        Sends in 64 KiB pieces and stops as soon as the server answers, as a real client does:
        a server that refuses a body closes the connection with the rest unread, and a client
        still writing then gets a reset that can discard the answer it had not read yet.
        """
        sock = socket.create_connection((self.host, self.port), timeout=timeout or self.timeout)
        out = b""
        try:
            for start in range(0, len(data), 65536):
                if read and select.select([sock], [], [], 0)[0]:
                    break  # answered early (413 ...): read it
                sock.sendall(data[start:start + 65536])
        except OSError:
            pass
        try:
            while read:
                part = sock.recv(65536)
                if not part:
                    break
                out += part
        except OSError:
            pass
        finally:
            sock.close()
        return out

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


def request(method: str, target: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def json_error(data: bytes) -> tuple[int, str | None]:
    """(status, error code) of a raw answer; code None when the body is not the JSON error shape."""
    if not data:
        return 0, None
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return status, None


def expect(data: bytes, status: int, code: str) -> Result:
    got = json_error(data)
    return ("pass" if got == (status, code) else "fail",
            f"{got[0] or 'connection closed, no answer'} {got[1] or '(not JSON)'}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# -- rows ---------------------------------------------------------------------------------------

def aborted_uploads(t: Target, args: argparse.Namespace) -> Result:
    head = request("POST", "/predict", {"Content-Type": "application/json", "Content-Length": "2000000"})
    partial = head + b'{"text": "' + b"a" * 1_900_000
    before = rss_mb(args.pid) if args.pid else None
    peaks = []
    for i in range(args.uploads):
        t.raw(partial, read=False)
        if args.pid and (i + 1) % 50 == 0:
            peaks.append(rss_mb(args.pid))
    status = t.call("GET", "/healthz")[0]  # answered once the server has read the backlog
    if before is None:
        return ("pass" if status == 200 else "fail",
                f"{args.uploads} aborted 1.9 MB uploads; /healthz {status} (give --pid for RSS)")
    settled = [rss_mb(args.pid)]
    for _ in range(10):  # RSS one second apart, until it stops moving (at most 10 s)
        time.sleep(1.0)
        settled.append(rss_mb(args.pid))
        if abs(settled[-1] - settled[-2]) < 1:
            break
    grown = settled[-1] - before
    ok = status == 200 and grown < 20
    return ("pass" if ok else "fail",
            f"{args.uploads} aborted 1.9 MB uploads: RSS {before:.0f} -> {settled[-1]:.0f} MB "
            f"(+{grown:.1f} MB; every 50 uploads: {', '.join(f'{p:.0f}' for p in peaks)}; after: "
            f"{', '.join(f'{p:.0f}' for p in settled)}); /healthz {status}")


def maximal_request(t: Target, args: argparse.Namespace) -> Result:
    texts = make_texts(100, 5000, "block", seed=random.randrange(1 << 30))  # distinct every run
    body = json.dumps({"texts": texts}, ensure_ascii=False).encode("utf-8")
    done = threading.Event()
    probes: list[float] = []

    def poll() -> None:
        conn = http.client.HTTPConnection(t.host, t.port, timeout=t.timeout)
        while not done.is_set():
            started = time.perf_counter()
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            probes.append(time.perf_counter() - started)
            time.sleep(0.005)
        conn.close()

    prober = threading.Thread(target=poll, daemon=True)
    prober.start()
    started = time.perf_counter()
    status = t.call("POST", "/predict", body, {"Content-Type": "application/json"})[0]
    seconds = time.perf_counter() - started
    done.set()
    prober.join(30)
    p99 = 1000 * percentile(probes, 99)
    # p99 < 50 ms is the target; the maximum shows whether the loop was held at all (before
    # issue 11 most probes were fast, during the upload, and one waited for the whole pipeline).
    ok = status == 200 and p99 < 50 and 1000 * max(probes) < 250
    return ("pass" if ok else "fail",
            f"POST 100 x 5,000 chars: {status} in {seconds:.1f} s; /healthz meanwhile: "
            f"{len(probes)} probes, p50 {1000 * percentile(probes, 50):.1f} ms, p99 {p99:.1f} ms, "
            f"max {1000 * max(probes):.1f} ms")


def char_budget(t: Target, args: argparse.Namespace) -> Result:
    budget, per_text = args.max_request_chars, 5000
    count = budget // per_text + 1
    if count > 100:
        return "skip", f"a budget of {budget} cannot be passed with 100 texts of 5,000 characters"
    body = json.dumps({"texts": ["发" * per_text] * count}, ensure_ascii=False).encode()
    status, _, answer = t.call("POST", "/predict", body, {"Content-Type": "application/json"})
    code = json.loads(answer).get("error", {}).get("code")
    return ("pass" if (status, code) == (413, "too_many_chars") else "fail", f"{status} {code}")


def metric_labels(t: Target, args: argparse.Namespace) -> Result:
    for i in range(5):  # the first ones add the "other" series once; measure after them
        t.raw(request(f"WARMUP{i}", "/healthz"))
    t.call("GET", "/metrics")
    size = len(t.call("GET", "/metrics")[2])
    for i in range(500):
        t.raw(request(f"FOOBAR{i}", "/healthz"))
    status, headers, body = t.call("FOOBAR1", "/healthz")
    after = t.call("GET", "/metrics")[2]
    ok = b"FOOBAR" not in after and len(after) - size < 200 and status == 405 and "allow" in headers
    return ("pass" if ok else "fail", f"500 made-up methods: /metrics {size} -> {len(after)} bytes; "
            f"answer {status}, Allow: {headers.get('allow')}")


def trickled_body(t: Target, args: argparse.Namespace) -> Result:
    sock = socket.create_connection((t.host, t.port), timeout=5)
    sock.sendall(request("POST", "/predict", {"Content-Type": "application/json", "Content-Length": "1000"}))
    started = time.monotonic()
    limit = args.body_timeout + 10
    closed = None
    while time.monotonic() - started < limit:
        try:
            sock.sendall(b" ")
            sock.settimeout(1.0)
            if sock.recv(1) == b"":
                closed = time.monotonic() - started
                break
        except socket.timeout:
            continue
        except OSError:
            closed = time.monotonic() - started
            break
    sock.close()
    if closed is None:
        return "fail", f"a body sent a byte a second was still open after {limit:.0f} s"
    return ("pass" if closed <= args.body_timeout + 5 else "fail",
            f"cut after {closed:.1f} s (body timeout {args.body_timeout:.0f} s)")


def edges(t: Target, args: argparse.Namespace) -> list[tuple[str, Result]]:
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    chunked = request("POST", "/predict", {"Content-Type": "application/json",
                                           "Transfer-Encoding": "chunked"}) + chunk * 70  # 4.6 MB
    return [
        ("70 KiB URL -> 414 JSON", expect(t.raw(request("GET", "/predict?text=" + "a" * 70 * 1024)), 414,
                                          "url_too_long")),
        ("66 KB header -> 431 JSON", expect(t.raw(request("GET", "/healthz", {"X-Big": "b" * 66_000})), 431,
                                            "headers_too_large")),
        ("Content-Length: abc -> 400 JSON", expect(t.raw(request("POST", "/predict", {
            "Content-Type": "application/json", "Content-Length": "abc"})), 400, "bad_request")),
        ("chunked body > 4 MB -> 413 JSON", expect(t.raw(chunked), 413, "body_too_large")),
        ("malformed header line -> 400 JSON", expect(t.raw(b"GET /healthz HTTP/1.1\r\nno colon\r\n\r\n"), 400,
                                                     "bad_request")),
    ]


def banner_head_models(t: Target, args: argparse.Namespace) -> list[tuple[str, Result]]:
    rows = []
    heads = [t.call("HEAD", path)[0] for path in ("/healthz", "/readyz")]
    rows.append(("HEAD /healthz, /readyz", ("pass" if heads[0] == 200 and heads[1] in (200, 503) else "fail",
                                            f"{heads[0]}, {heads[1]}")))
    servers = {t.call("GET", path)[1].get("server") for path in ("/healthz", "/nope")}
    rows.append(("no Server banner", ("pass" if servers == {None} else "fail", f"Server: {servers}")))
    status, _, body = t.call("GET", "/models")
    models = json.loads(body)
    text = json.dumps(models)
    errors = [v.get("error") or v.get("vectors") for v in models.get("versions", [])
              if v.get("state") == "failed" or str(v.get("vectors", "")).startswith("failed")]
    absolute = '"/' in text
    rows.append(("/models: relative paths, error classes",
                 ("pass" if status == 200 and not absolute and all(" " not in str(e).removeprefix("failed: ")
                                                                 for e in errors) else "fail",
                  f"absolute paths: {absolute}; failed versions' errors: {errors or 'none'}")))
    huge = b'{"text": "a", "n": ' + b"9" * 5001 + b"}"
    status, _, body = t.call("POST", "/predict", huge, {"Content-Type": "application/json"})
    message = json.loads(body)["error"]["message"]
    rows.append(("5,001-digit number", ("pass" if "set_int_max_str_digits" not in message else "fail",
                                        f"{status}: {message[:80]}")))
    return rows


def feedback_flood(t: Target, args: argparse.Namespace) -> Result:
    """5,000-character verdicts from one client until refused: 429 quota_exceeded (daily bytes or
    count per key id) or 507 feedback_store_full, never unbounded growth."""
    rng = random.Random(11)
    sent = 0
    started = time.monotonic()
    for i in range(args.flood_limit):
        text = "".join(rng.choice("加微信领取优惠券代开发票贷款秒批") for _ in range(5000))
        body = json.dumps({"text": text, "label": "pass"}, ensure_ascii=False).encode()
        status, headers, answer = t.call("POST", "/feedback", body, {"Content-Type": "application/json"})
        if status == 202:
            sent += len(body)
            continue
        code = json.loads(answer).get("error", {}).get("code")
        ok = (status, code) in ((429, "quota_exceeded"), (507, "feedback_store_full"))
        return ("pass" if ok else "fail", f"refused after {i} verdicts ({sent / 1e6:.1f} MB, "
                f"{time.monotonic() - started:.1f} s): {status} {code}, Retry-After {headers.get('retry-after')}")
    return "fail", f"{args.flood_limit} verdicts ({sent / 1e6:.1f} MB) all stored: no quota or cap"


def anonymous_lists(t: Target, args: argparse.Namespace) -> Result:
    """Issue 21: with keys on, ``GET /lists`` without a key must be refused (401/403); before, it
    answered 200 with the thresholds, the short-text rule, folder paths and parse errors."""
    keyed = t.call("GET", "/predict?text=hello")[0]
    if keyed != 401:
        return "skip", (f"keys are off here (anonymous /predict: {keyed}); run against a service with "
                        "ANTISPAM_KEYS_FILE set (--keys-on)")
    status, _, body = t.call("GET", "/lists")
    if status in (401, 403):
        return "pass", f"{status} {json.loads(body)['error']['code']}"
    shown = sorted(json.loads(body)) if status == 200 else body[:80]
    return "fail", f"{status}: anyone reads {shown}"


# -- term lists (issue 21) ----------------------------------------------------------------------

MARK = "# written by scripts/abuse.py (issue 21 rows); deleted when it ends\n"
HOTLINE = "400-812-3456"
# Adverts to pick from: the first one the served model does not pass carries the bypass row.
ADVERTS = ["办理贷款加微信", "代开各类发票，低价出售，需要的联系", "贷款秒批，无抵押，加微信详谈",
           "代开发票，优惠贷款，加微信"]


class ScratchLists:
    """The files this script writes into the service's lists folder; refuses to overwrite files
    it did not write (the folder must be a scratch one), removes them on exit."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.written: list[Path] = []

    def write(self, name: str, lines: list[str]) -> None:
        path = self.folder / name
        if path.exists() and not path.read_text(encoding="utf-8").startswith(MARK):
            raise RuntimeError(f"{path} exists and was not written by this script: use a scratch --lists-dir")
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(MARK + "".join(line + "\n" for line in lines), encoding="utf-8")
        tmp.replace(path)
        if path not in self.written:
            self.written.append(path)

    def remove(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)


def lists_status(t: Target) -> dict:
    status, _, body = t.call("GET", "/lists")
    if status != 200:
        raise RuntimeError(f"GET /lists answered {status}: run the term-list rows with keys off")
    return json.loads(body)


def wait_for_lists(t: Target, files: set[str], timeout: float = 20.0) -> dict:
    """Poll ``GET /lists`` (each poll also lets the service look at the folder) until ``files``
    are loaded, with or without an error; the status then."""
    end = time.monotonic() + timeout
    while True:
        status = lists_status(t)
        if files <= set(status.get("files", {})):
            return status
        if time.monotonic() > end:
            raise RuntimeError(f"the service did not load {sorted(files)} within {timeout:.0f} s "
                               "(is --lists-dir the service's lists folder?)")
        time.sleep(0.3)


def verdict(t: Target, text: str) -> dict:
    status, _, body = t.call("GET", "/predict?" + urllib.parse.urlencode({"text": text}))
    if status != 200:
        raise RuntimeError(f"/predict answered {status}: {body[:200]!r}")
    return json.loads(body)["data"]


def allow_list_bypass(t: Target, args: argparse.Namespace, scratch: ScratchLists) -> Result:
    """Issue 21: with the hotline in allow.txt, the hotline plus an advert used to pass."""
    scratch.write("allow.txt", [HOTLINE])
    scratch.write("block.txt", [])
    wait_for_lists(t, {"allow.txt", "block.txt"})
    alone = None
    for advert in ADVERTS:
        item = verdict(t, advert)
        if item["suggestion"] != "pass":
            alone = (advert, item)
            break
    if alone is None:
        return "skip", "the served model passes every advert of the row: nothing to bypass"
    advert, item = alone
    issue_text = f"客服热线：{HOTLINE}，{advert}"
    with_hotline = verdict(t, issue_text)
    hotline_only = verdict(t, f"客服热线：{HOTLINE}")
    ok = with_hotline["suggestion"] != "pass"
    return ("pass" if ok else "fail",
            f"{advert!r} alone: {item['suggestion']} (p={item['spam_probability']:.3f}); "
            f"{issue_text!r} with {HOTLINE} allowed: {with_hotline['suggestion']} "
            f"(p={with_hotline['spam_probability']:.3f}, decided_by {with_hotline['decided_by']}); "
            f"the hotline alone: {hotline_only['suggestion']} ({hotline_only['decided_by']})")


def catastrophic_pattern(t: Target, args: argparse.Namespace, scratch: ScratchLists) -> Result:
    """Issue 21: ``re:(x+x+)+y`` against digits (normalized to x) backtracked for seconds on the
    event loop; a backreference is a construct only a backtracking engine runs."""
    scratch.write("block.txt", ["re:(x+x+)+y"])
    scratch.write("abuse.block.txt", ["re:(a)\\1"])
    status = wait_for_lists(t, {"block.txt", "abuse.block.txt"})
    refused = status["files"]["abuse.block.txt"].get("error", "")
    loaded = status["files"]["block.txt"]
    timings = []
    for digits in (30, 5000 - 3):
        text = "热线：" + "1" * digits
        started = time.perf_counter()
        answer = verdict(t, text)
        timings.append((digits, 1000 * (time.perf_counter() - started), answer["decided_by"]))
    ok = ("backreferences" in refused and "line 2" in refused and "error" not in loaded
          and all(ms < 1000 for _, ms, _ in timings))
    shown = "; ".join(f"{n} digits: {ms:.0f} ms ({by})" for n, ms, by in timings)
    return ("pass" if ok else "fail", f"re:(x+x+)+y loaded ({loaded.get('terms')} entries), /predict {shown}; "
            f"re:(a)\\1 refused: {refused[:120]!r}")


def term_list_rows(t: Target, args: argparse.Namespace) -> list[tuple[str, Result]]:
    names = ("an allowed phrase does not pass an advert (allow-list bypass)",
             "catastrophic re: pattern refused or linear (ReDoS)")
    if not args.lists_dir:
        return [(name, ("skip", "give --lists-dir (the service's scratch lists folder)")) for name in names]
    scratch = ScratchLists(args.lists_dir)
    rows: list[tuple[str, Result]] = []
    try:
        for name, row in zip(names, (allow_list_bypass, catastrophic_pattern)):
            try:
                rows.append((name, row(t, args, scratch)))
            except Exception as exc:
                rows.append((name, ("fail", f"{type(exc).__name__}: {exc}")))
    finally:
        scratch.remove()
    return rows


TODO = [
    ("anyone can retrain the model (feedback provenance)",
     "checked by tests/service/test_feedback_trust.py and test_retrain.py (the retrain merge; "
     "see the report's 'feedback trust' line)"),
    ("log lines capped", "checked by tests/service/test_edges.py (the log is not visible from here)"),
    ("readiness: version folders deleted", "checked by tests/service/test_edges.py (needs the model folder)"),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the service (loopback only)")
    p.add_argument("--pid", type=int, help="the serving process, for RSS figures")
    p.add_argument("--uploads", type=int, default=300, help="aborted uploads (default 300)")
    p.add_argument("--body-timeout", type=float, default=30.0, help="the service's body timeout")
    p.add_argument("--max-request-chars", type=int, default=500_000, help="the service's budget")
    p.add_argument("--skip", nargs="*", default=[], choices=("uploads", "maximal", "trickle"),
                   help="rows to leave out (the slow ones)")
    p.add_argument("--feedback-flood", action="store_true",
                   help="also flood POST /feedback until refused (writes to the service's store)")
    p.add_argument("--flood-limit", type=int, default=5000, help="most verdicts the flood sends")
    p.add_argument("--lists-dir", help="the service's lists folder, a scratch one: adds the term-list "
                   "rows (issue 21), which write allow/block files there and remove them after")
    p.add_argument("--keys-on", action="store_true",
                   help="the service has API keys on: run only the rows about anonymous access "
                   "(the others send no key and expect keys off)")
    args = p.parse_args(argv)
    t = Target(args.url)
    rows: list[tuple[str, Result]] = []
    lists_row = "anonymous GET /lists with keys on -> 401/403"
    if args.keys_on:
        rows.append((lists_row, anonymous_lists(t, args)))
        return report(rows)
    single: list[tuple[str, str, Callable[[Target, argparse.Namespace], Result]]] = [
        ("uploads", "aborted uploads release their memory", aborted_uploads),
        ("maximal", "/healthz during a maximal request", maximal_request),
        ("budget", "character budget per request -> 413", char_budget),
        ("labels", "made-up methods: fixed metric labels, 405 + Allow", metric_labels),
        ("trickle", "a trickled body is cut after the body timeout", trickled_body),
    ]
    for key, name, row in single:
        if key in args.skip:
            rows.append((name, ("skip", "--skip")))
            continue
        try:
            rows.append((name, row(t, args)))
        except Exception as exc:  # a row that crashes is a failed row, not a crashed script
            rows.append((name, ("fail", f"{type(exc).__name__}: {exc}")))
    for group in (edges, banner_head_models):
        try:
            rows += group(t, args)
        except Exception as exc:
            rows.append((group.__name__, ("fail", f"{type(exc).__name__}: {exc}")))
    flood = "feedback store grows without limit: quota or cap refuses a flood"
    if args.feedback_flood:
        try:
            rows.append((flood, feedback_flood(t, args)))
        except Exception as exc:
            rows.append((flood, ("fail", f"{type(exc).__name__}: {exc}")))
    else:
        rows.append((flood, ("skip", "give --feedback-flood (writes to the service's feedback store)")))
    rows.append((lists_row, anonymous_lists(t, args)))
    rows += term_list_rows(t, args)
    rows += [(name, ("todo", why)) for name, why in TODO]
    return report(rows)


def report(rows: list[tuple[str, Result]]) -> int:
    width = max(len(name) for name, _ in rows)
    for name, (outcome, detail) in rows:
        print(f"{outcome.upper():<5} {name:<{width}}  {detail}")
    failed = sum(1 for _, (outcome, _) in rows if outcome == "fail")
    print(f"{failed} failed, {sum(1 for _, (o, _) in rows if o == 'pass')} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
