"""``antispam bench --compare FILE``: this run's rows against a saved results JSON.

Rows are matched by their ``scenario`` label (for example ``local-2w GET 1 max``). For each
matched row it reports the change of messages/s (higher is better), p99 latency and CPU per
message (lower is better) and errors; a change worse than ``tolerance`` (a fraction: 0.10 = 10 %)
is marked as a regression, as is any increase in errors. A row only in the baseline is reported
as missing, a row only in this run as new: neither is an error. Pure functions, except
:func:`load_baseline`, which reads the file.

Only files of this bench's schema (:data:`antispam.bench.report.SCHEMA`) and of
``antispam-bench/2`` are compared (a /2 file has plain rows only, with the same labels and
meaning as /3's plain rows; /3 added variant rows, whose labels end in ``+lists``/``+explain``):
the pipeline figures of ``antispam-bench/1`` meant something else (one 20-token row per
message), and its rows have no CPU per message.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from antispam.bench.report import SCHEMA
from antispam.errors import UserError

DEFAULT_TOLERANCE = 0.10
# Schemas whose rows mean what this bench's rows of the same label mean.
COMPARABLE_SCHEMAS = ("antispam-bench/2", SCHEMA)
# Settings that change what a row measures; a baseline run with other values is still compared,
# with a warning naming them.
SETTINGS_COMPARED = ("quick", "duration", "warmup", "texts", "driver", "cache", "connections", "model_name")


@dataclass(frozen=True)
class Metric:
    name: str  # as printed
    path: tuple[str, ...]  # keys into a result record
    higher_is_better: bool
    fmt: str


METRICS = (
    Metric("msg/s", ("messages_per_s",), True, ".0f"),
    Metric("p99 ms", ("latency_ms", "p99"), False, ".1f"),
    Metric("CPU µs/msg", ("cpu_us_per_message",), False, ".0f"),
)


@dataclass
class Delta:
    metric: str
    before: float | None
    after: float | None
    change: float | None  # after / before - 1; None when either side is unknown or before is 0
    regression: bool


@dataclass
class RowComparison:
    scenario: str
    status: str  # "compared" | "missing" (only in the baseline) | "new" (only in this run)
    deltas: list[Delta] = field(default_factory=list)
    errors_before: int | None = None
    errors_after: int | None = None

    @property
    def regressions(self) -> list[str]:
        found = [d.metric for d in self.deltas if d.regression]
        if self.errors_before is not None and self.errors_after is not None and self.errors_after > self.errors_before:
            found.append("errors")
        return found


def load_baseline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a saved bench JSON; :class:`UserError` unless it is one of this schema with results."""
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
    except OSError as exc:
        raise UserError(f"--compare: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserError(f"--compare: {path} is not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise UserError(f"--compare: {path} is not a bench results file (a JSON object)")
    schema = payload.get("schema")
    if schema not in COMPARABLE_SCHEMAS:
        raise UserError(
            f"--compare: {path} has schema {schema!r}; this bench writes {SCHEMA!r} and compares only "
            f"files of {' or '.join(map(repr, COMPARABLE_SCHEMAS))} (pipeline figures changed meaning with "
            f"full-text windows, and CPU per message is new). Run the baseline again with this version of "
            f"antispam bench.")
    results = payload.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) and isinstance(r.get("scenario"), str)
                                                for r in results):
        raise UserError(f"--compare: {path} has no usable 'results' list")
    return payload


def _value(record: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = record
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def delta(metric: Metric, before: Mapping[str, Any], after: Mapping[str, Any], tolerance: float) -> Delta:
    old, new = _value(before, metric.path), _value(after, metric.path)
    if old is None or new is None or old == 0:
        return Delta(metric.name, old, new, None, False)
    change = new / old - 1.0
    worse = -change if metric.higher_is_better else change
    return Delta(metric.name, old, new, change, worse > tolerance)


def compare(results: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]],
            tolerance: float = DEFAULT_TOLERANCE) -> list[RowComparison]:
    """One entry per scenario of either run: this run's order first, then rows missing from it."""
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    old = {r["scenario"]: r for r in baseline}
    seen: set[str] = set()
    out: list[RowComparison] = []
    for row in results:
        name = row["scenario"]
        seen.add(name)
        before = old.get(name)
        if before is None:
            out.append(RowComparison(name, "new"))
            continue
        out.append(RowComparison(name, "compared", [delta(m, before, row, tolerance) for m in METRICS],
                                 errors_before=_int(before.get("errors")), errors_after=_int(row.get("errors"))))
    out.extend(RowComparison(name, "missing") for name in old if name not in seen)
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


BUSY_OTHER_CPU = 25.0  # other processes' CPU % (100 = one core) past which a row's machine was busy


def busy_machine_note(results: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]]) -> str | None:
    """A warning when other processes used much CPU during either run (``other_cpu_percent``)."""
    def peak(rows: Sequence[Mapping[str, Any]]) -> float:
        values = [_value(r, ("other_cpu_percent",)) for r in rows]
        return max((v for v in values if v is not None), default=0.0)

    before, after = peak(baseline), peak(results)
    if max(before, after) < BUSY_OTHER_CPU:
        return None
    return (f"other processes used up to {before:.0f}% CPU during the baseline and {after:.0f}% during this "
            f"run (100 = one core): changes may be the machine's, not the service's")


def settings_differences(config: Mapping[str, Any], baseline_config: Mapping[str, Any]) -> list[str]:
    """The settings (of :data:`SETTINGS_COMPARED`) the two runs did not share, as ``key: old -> new``."""
    return [f"{key}: {baseline_config.get(key)!r} -> {config.get(key)!r}" for key in SETTINGS_COMPARED
            if key in config and key in baseline_config and config[key] != baseline_config[key]]


def _cell(d: Delta, fmt: str) -> str:
    if d.before is None and d.after is None:
        return "-"
    old = "-" if d.before is None else format(d.before, fmt)
    new = "-" if d.after is None else format(d.after, fmt)
    text = f"{old} -> {new}"
    if d.change is not None:
        text += f" ({d.change:+.0%})"
    return text + (" !" if d.regression else "")


def format_comparison(rows: Sequence[RowComparison], *, baseline: str, tolerance: float,
                      notes: Sequence[str] = ()) -> str:
    """The comparison as a table: one line per scenario, regressions marked with ``!``."""
    header = f"{'scenario':<46} " + " ".join(f"{m.name:<24}" for m in METRICS) + " errors"
    lines = [f"compared with {baseline} (a change worse than {tolerance:.0%} is a regression, marked !):",
             header, "-" * len(header)]
    for row in rows:
        if row.status != "compared":
            what = "missing in this run" if row.status == "missing" else "new: not in the baseline"
            lines.append(f"{row.scenario:<46} {what}")
            continue
        cells = [f"{_cell(d, m.fmt):<24}" for d, m in zip(row.deltas, METRICS)]
        errors = f"{row.errors_before} -> {row.errors_after}"
        if "errors" in row.regressions:
            errors += " !"
        lines.append(f"{row.scenario:<46} " + " ".join(cells) + " " + errors)
    regressed = [r for r in rows if r.regressions]
    missing = sum(1 for r in rows if r.status == "missing")
    summary = (f"{len(regressed)} regressed row(s): " + "; ".join(f"{r.scenario} ({', '.join(r.regressions)})"
                                                               for r in regressed)
               if regressed else "no regression beyond the tolerance")
    if missing:
        summary += f"; {missing} baseline row(s) missing in this run"
    lines.append(summary)
    lines.extend(f"note: {note}" for note in notes)
    return "\n".join(lines)


def to_json(rows: Sequence[RowComparison], *, baseline: str, tolerance: float) -> dict[str, Any]:
    return {"baseline": baseline, "tolerance": tolerance,
            "rows": [{**asdict(r), "regressions": r.regressions} for r in rows]}
