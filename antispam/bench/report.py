"""The bench's outputs: a fixed-width table for people and a JSON file for comparing runs.

The JSON layout is versioned (``schema``); :func:`check_payload` is what the tests hold it to,
so a change of layout is a deliberate bump, not an accident. ``antispam bench --compare`` reads
only files of this schema (:mod:`antispam.bench.compare`).

Schemas:

* ``antispam-bench/1``: the pipeline scored the first 20 tokens of a message, one row each.
* ``antispam-bench/2``: the pipeline figures are per message over all its 20-token windows
  (``rows_per_message`` rows each), so its µs/message and implied limit mean something else than
  in /1; every result has ``cpu_us_per_message`` (the service's CPU time per message) and
  ``cpu_vs_pipeline`` (that over the pipeline's µs/message).
* ``antispam-bench/3``: the pipeline's per-message figures are means (were medians, which
  under-state the mean the service's CPU per message is compared with), and the pipeline names
  its ``tokenizer`` and times plain jieba beside it (``text_jieba_us``). Every result has
  ``variant`` (``plain``, ``lists``, ``explain``, ``lists+explain``: :mod:`antispam.bench.variants`)
  and, unless plain, ``vs_plain`` (its figures over the plain row of the same service and load);
  the payload has ``lists`` (what the generated lists held and how many test texts they decide,
  or null). Rows keep their labels and the meaning of their own figures (msg/s, latency, CPU per
  message): ``--compare`` reads /2 files too, as plain rows.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
from pathlib import Path
from typing import Any, Mapping, Sequence

from antispam.atomic import atomic_write_json

SCHEMA = "antispam-bench/3"
RESULT_DIR = "bench-results"

# Keys every entry of "results" has, and their types (None allowed where marked).
RESULT_KEYS: dict[str, tuple[type, ...]] = {
    "scenario": (str,),
    "variant": (str,),
    "service": (str,),
    "backend": (str,),
    "workers": (int,),
    "request": (str,),
    "mode": (str,),
    "target_rate": (int, float),
    "connections": (int,),
    "window_s": (int, float),
    "requests": (int,),
    "ok": (int,),
    "errors": (int,),
    "requests_per_s": (int, float),
    "messages_per_s": (int, float),
    "latency_ms": (dict,),
    "statuses": (dict,),
    "error_kinds": (dict,),
    "service_cpu_percent": (int, float, type(None)),
    "service_rss_mb": (int, float, type(None)),
    "service_pss_mb": (int, float, type(None)),
    "fraction_of_limit": (int, float, type(None)),
    "cpu_us_per_message": (int, float, type(None)),
    "cpu_vs_pipeline": (int, float, type(None)),
    "driver": (str,),
    "client_cpu_percent": (int, float, type(None)),
    "other_cpu_percent": (int, float, type(None)),
}
LATENCY_KEYS = ("p50", "p95", "p99", "max", "mean", "count")
PIPELINE_KEYS = ("version", "batch", "rows_per_message", "text_us", "featurize_us", "model_us", "total_us",
                 "implied_messages_per_s", "end_to_end_messages_per_s", "tokenizer", "text_jieba_us",
                 "end_to_end_cpu_us")

COLUMNS = [
    ("scenario", 46, "s"), ("req/s", 8, ".0f"), ("msg/s", 8, ".0f"), ("p50 ms", 7, ".1f"),
    ("p95 ms", 7, ".1f"), ("p99 ms", 7, ".1f"), ("max ms", 7, ".1f"), ("errors", 6, "d"),
    ("CPU %", 6, ".0f"), ("CPU/msg", 8, ".0f"), ("x pipe", 6, ".2f"), ("RSS MB", 7, ".0f"),
    ("limit", 6, ".0%"), ("gen CPU", 7, ".0f"),
    ("other", 6, ".0f"),
]


def default_json_path(now: _dt.datetime | None = None) -> Path:
    now = now or _dt.datetime.now()
    return Path(RESULT_DIR) / f"{now:%Y%m%d-%H%M%S}.json"


def host_info() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "machine": platform.machine()}


def _cell(value: Any, width: int, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = "-"
    elif fmt == "s":
        text = str(value)
    else:
        text = format(value, fmt)
    return text.ljust(width) if fmt == "s" else text.rjust(width)


def table_row(result: Mapping[str, Any]) -> list[Any]:
    lat = result["latency_ms"]
    return [result["scenario"], result["requests_per_s"], result["messages_per_s"], lat["p50"],
            lat["p95"], lat["p99"], lat["max"], result["errors"], result["service_cpu_percent"],
            result.get("cpu_us_per_message"), result.get("cpu_vs_pipeline"),
            result["service_rss_mb"], result["fraction_of_limit"], result.get("client_cpu_percent"),
            result.get("other_cpu_percent")]


def cpu_us_per_message(cpu_percent: float | None, messages_per_s: float) -> float | None:
    """CPU time per message in µs: CPU-seconds per second over messages per second."""
    if cpu_percent is None or not messages_per_s or messages_per_s <= 0 or not math.isfinite(messages_per_s):
        return None
    return cpu_percent / 100.0 * 1e6 / messages_per_s


def add_cpu_per_message(results: Sequence[dict[str, Any]], pipeline: Mapping[str, Any] | None) -> None:
    """Set each result's ``cpu_us_per_message`` and ``cpu_vs_pipeline`` (in place).

    ``cpu_us_per_message``: the service's CPU (all its processes; for the gRPC rows the
    frontend's, the model server's is ``model_server_cpu_us_per_message``) per message answered.
    ``cpu_vs_pipeline``: that over the raw pipeline's CPU time per message
    (``end_to_end_cpu_us``: CPU over CPU; files without it: its wall-clock ``total_us``), the same
    work in one process with no HTTP (1.0 = no overhead at all); None without a pipeline figure,
    and for the long-text rows (the pipeline is measured on the test texts).
    """
    per_message: float | None = None
    if pipeline:
        per_message = pipeline.get("end_to_end_cpu_us") or pipeline.get("total_us")
    for result in results:
        cpu = cpu_us_per_message(result.get("service_cpu_percent"), result["messages_per_s"])
        result["cpu_us_per_message"] = cpu
        if result.get("model_server_cpu_percent") is not None:
            result["model_server_cpu_us_per_message"] = cpu_us_per_message(result["model_server_cpu_percent"],
                                                                           result["messages_per_s"])
        comparable = result.get("text_chars") is None
        result["cpu_vs_pipeline"] = cpu / per_message if cpu is not None and per_message and comparable else None


# Figures of a variant row compared with its plain row: (key in vs_plain, path into a record).
VS_PLAIN = (("messages_per_s", ("messages_per_s",)), ("p50", ("latency_ms", "p50")),
            ("p99", ("latency_ms", "p99")), ("cpu_us_per_message", ("cpu_us_per_message",)))


def _figure(record: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = record
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _load_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return (record["service"], record["request"], record["mode"], record["target_rate"], record.get("text_chars"))


def add_vs_plain(results: Sequence[dict[str, Any]]) -> None:
    """Set each non-plain result's ``vs_plain``: its msg/s, p50, p99 and CPU per message over
    those of the plain row of the same service and load (None where either is unknown or the
    plain figure is 0); no plain row in the run: ``vs_plain`` is None."""
    plain = {_load_key(r): r for r in results if r.get("variant", "plain") == "plain"}
    for result in results:
        if result.get("variant", "plain") == "plain":
            continue
        base = plain.get(_load_key(result))
        if base is None:
            result["vs_plain"] = None
            continue
        ratios: dict[str, float | None] = {}
        for key, path in VS_PLAIN:
            before, after = _figure(base, path), _figure(result, path)
            ratios[key] = after / before if before and after is not None else None
        result["vs_plain"] = ratios


def format_variants(results: Sequence[Mapping[str, Any]], lists: Mapping[str, Any] | None = None) -> str:
    """The variant rows as ratios of their plain rows (empty when the run has none)."""
    rows = [r for r in results if r.get("variant", "plain") != "plain"]
    if not rows:
        return ""

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"x{value:.2f}"

    header = f"{'variant row':<46} {'msg/s':>7} {'p50':>7} {'p99':>7} {'CPU/msg':>8}"
    lines = ["against the plain row of the same service and load (x1.00 = no cost):", header, "-" * len(header)]
    for r in rows:
        vs = r.get("vs_plain") or {}
        lines.append(f"{r['scenario']:<46} {ratio(vs.get('messages_per_s')):>7} {ratio(vs.get('p50')):>7} "
                     f"{ratio(vs.get('p99')):>7} {ratio(vs.get('cpu_us_per_message')):>8}")
    if lists:
        hits = lists.get("hits") or {}
        lines.append(f"+lists: {lists['block_terms']} generated block terms, {lists['block_patterns']} re: patterns, "
                     f"{lists['allow_terms']} allow terms and {lists['allow_terms_with_digits']} with digits "
                     f"(default policy); they decide {hits.get('share', 0.0):.1%} of the test texts, "
                     "the model the rest.")
    if any(variant_uses(r, "explain") for r in rows):
        lines.append("+explain: every request asks for explain=true; msg/s counts the texts explained.")
    logged = [r for r in rows if variant_uses(r, "decisions")]
    if logged:
        lines.append("+decisions: the same service with the decision log on (a second process, run at the same "
                     "time; its rows alternate with the plain ones); what its log did during each row:")
        for r in logged:
            log = r.get("decision_log") or {}
            lines.append(f"  {r['scenario']}: {log.get('written', 0):.0f} decisions written, "
                         f"{log.get('dropped', 0):.0f} dropped")
    return "\n".join(lines)


def variant_uses(record: Mapping[str, Any], feature: str) -> bool:
    return feature in str(record.get("variant", "plain")).split("+")


def format_table(results: Sequence[Mapping[str, Any]]) -> str:
    header = " ".join(name.ljust(w) if f == "s" else name.rjust(w) for name, w, f in COLUMNS)
    lines = [header, "-" * len(header)]
    for result in results:
        cells = table_row(result)
        lines.append(" ".join(_cell(v, w, f) for v, (_n, w, f) in zip(cells, COLUMNS)))
    lines.append("CPU % and RSS MB: the service, all its processes (100 = one core); CPU/msg: the service's CPU "
                 "µs per message (CPU-seconds / messages);\n"
                 "x pipe: CPU/msg over the raw pipeline's CPU µs/message (1.00 = no cost beyond the pipeline); "
                 "limit: messages/s as a fraction of the raw pipeline limit;\n"
                 "gen CPU: the load generator's own CPU %; "
                 "other: CPU % of every other process on the machine meanwhile (should be ~0).\n"
                 "gRPC rows: CPU, CPU/msg and RSS are the frontend's; the TF Serving stand-in's CPU is in the "
                 "JSON (model_server_cpu_percent, model_server_cpu_us_per_message).\n"
                 "1000-char rows: each request carries texts of exactly 1,000 characters (consecutive "
                 "test texts joined with 。); msg/s counts those texts; limit and x pipe: not measured for "
                 "them (-).")
    return "\n".join(lines)


def faster_pipeline(before: dict[str, Any], after: dict[str, Any] | None) -> dict[str, Any]:
    """The faster of the pipeline measurements taken before and after the loads, with both
    recorded in ``measurements``.

    The machine's speed drifts over the minutes a bench runs (within one run on a quiet machine
    the limit moved by up to 18%), and the service's rows sit in between. Taking the faster
    measurement makes every "limit" share and "x pipe" ratio the conservative one: the pipeline
    is never charged for a slow moment.
    """
    taken = [("before", before)] + ([("after", after)] if after else [])
    summary = [{"when": when, **{key: m.get(key) for key in ("implied_messages_per_s", "total_us",
                                                               "end_to_end_cpu_us")}}
               for when, m in taken]
    _, best = max(taken, key=lambda pair: pair[1]["implied_messages_per_s"])
    return {**best, "measurements": summary}


def format_pipeline(pipeline: Mapping[str, Any] | None) -> str:
    if not pipeline:
        return "raw pipeline limit: not measured"
    batch = pipeline["batch"]
    rows = pipeline.get("rows_per_message")
    windowing = pipeline.get("windowing") or {}
    if windowing:
        windows = (f"20-token windows, stride {windowing.get('stride')}, cap {windowing.get('cap')}, "
                   f"{windowing.get('aggregation')}")
    else:
        windows = "20-token windows"
    batch_note = f"median batch {pipeline['model_batch_ms']:.2f} ms"
    if pipeline.get("model_batch_rows") is not None:
        batch_note += f", {pipeline['model_batch_rows']:.0f} rows"
    tokenizer = pipeline.get("tokenizer", "jieba")
    stages = [
        (f"(a) text pipeline (normalize + {tokenizer})", pipeline["text_us"], "mean"),
        ("(b) featurizer (windows -> rows)", pipeline["featurize_us"], "mean"),
        (f"(c) model on the rows + fold, {batch}-batches", pipeline["model_us"], f"mean; {batch_note}"),
    ]
    if pipeline.get("text_jieba_us") is not None and tokenizer != "jieba":
        stages.insert(1, ("    the same with plain jieba (not served)", pipeline["text_jieba_us"],
                          f"{pipeline['text_jieba_us'] / max(pipeline['text_us'], 1e-9):.1f}x (a)"))
    lines = [(f"raw pipeline limit (one process, no HTTP; model version {pipeline['version']}, "
              f"{pipeline['messages']} test texts, batches of {batch} messages):")]
    lines += [f"  {name:<42}{us:8.1f} µs/message ({note})" for name, us, note in stages]
    if rows is not None:
        lines.append(f"  rows per message {rows:.2f} ({windows})")
    lines.append(
        f"  total {pipeline['total_us']:.1f} µs/message -> implied "
        f"{pipeline['implied_messages_per_s']:.0f} messages/s; measured end to end "
        f"{pipeline['end_to_end_messages_per_s']:.0f} messages/s")
    if pipeline.get("end_to_end_cpu_us") is not None:
        lines.append(f"  CPU per message end to end {pipeline['end_to_end_cpu_us']:.1f} µs (all threads; "
                     "'x pipe' divides the service's CPU/msg by this)")
    measurements = pipeline.get("measurements") or []
    if len(measurements) > 1:
        taken = ", ".join(f"{m['when']} {m['implied_messages_per_s']:.0f} msg/s"
                          + (f" ({m['end_to_end_cpu_us']:.1f} µs CPU)" if m.get("end_to_end_cpu_us") else "")
                          for m in measurements)
        lines.append(f"  measured before and after the loads: {taken}; the faster is used")
    return "\n".join(lines)


def check_payload(payload: Mapping[str, Any]) -> list[str]:
    """Problems with a bench JSON document (empty list: it has the documented layout)."""
    problems: list[str] = []
    if payload.get("schema") != SCHEMA:
        problems.append(f"schema is {payload.get('schema')!r}, expected {SCHEMA!r}")
    for key in ("started", "host", "config", "results"):
        if key not in payload:
            problems.append(f"missing top-level key {key!r}")
    pipeline = payload.get("pipeline")
    if pipeline is not None:
        problems.extend(f"pipeline lacks {k!r}" for k in PIPELINE_KEYS if k not in pipeline)
    for i, result in enumerate(payload.get("results", [])):
        for key, types in RESULT_KEYS.items():
            if key not in result:
                problems.append(f"results[{i}] lacks {key!r}")
            elif not isinstance(result[key], types):
                problems.append(f"results[{i}].{key} is {type(result[key]).__name__}")
        for key in LATENCY_KEYS:
            if key not in result.get("latency_ms", {}):
                problems.append(f"results[{i}].latency_ms lacks {key!r}")
    return problems


def _finite(value: Any) -> Any:
    """JSON has no NaN: write null instead (a run with no answers has no percentiles)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_json(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    path = Path(path)
    atomic_write_json(path, _finite(dict(payload)))
    return path
