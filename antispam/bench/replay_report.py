"""The replay benchmark's outputs: the issue's targets, a table for people, the JSON layout.

One *row* per service the trace was replayed against (``off``: campaign detection off, ``on``:
on), with the figures of :func:`antispam.bench.replay_drive.judge` plus the service's CPU over
the replay. :func:`targets` checks issue 24's acceptance on the ``on`` row (and ``on`` against
``off`` for the CPU); :func:`format_report` prints both rows side by side, then one line per
campaign and per burst.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

SCHEMA = "antispam-bench-replay/1"
RECALL_TARGET = 0.95  # of campaign copies after the 10th, blocked or sent to review
CPU_TARGET = 1.15  # CPU per message with the feature on, over off


def cpu_us_per_message(cpu_percent: float | None, window_s: float, messages: int) -> float | None:
    """Service CPU time per message: ``cpu_percent`` (100 = one core) over ``window_s``."""
    if cpu_percent is None or messages <= 0:
        return None
    return cpu_percent / 100.0 * window_s / messages * 1e6


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def compare(rows: Mapping[str, Mapping[str, Any]], on: str = "on", off: str = "off") -> dict[str, Any] | None:
    """``on`` over ``off``: CPU per message and p99 latency (None when either row is missing)."""
    if on not in rows or off not in rows:
        return None
    a, b = rows[on], rows[off]
    return {"cpu_per_message": _ratio(a.get("cpu_us_per_message"), b.get("cpu_us_per_message")),
            "p99": _ratio(a["latency_ms"].get("p99"), b["latency_ms"].get("p99"))}


def targets(rows: Mapping[str, Mapping[str, Any]], comparison: Mapping[str, Any] | None,
            on: str = "on", difference: Mapping[str, Mapping[str, int]] | None = None) -> list[dict[str, Any]]:
    """Issue 24's acceptance, checked on row ``on``; with ``difference`` (on against off, message
    by message), also whether the feature itself blocked any burst message: the literal target
    counts the model's own blocks too, which the feature can add to but not remove."""
    out: list[dict[str, Any]] = []
    row = rows.get(on)
    if row is None:
        return out
    recall = row["campaign"]["recall_after_10"]
    out.append({"target": f"campaign copies after the 10th blocked or sent to review >= {RECALL_TARGET:.0%} ({on})",
                "value": "n/a" if recall is None else f"{recall:.1%}",
                "met": recall is not None and recall >= RECALL_TARGET})
    out.append({"target": f"ordinary burst messages blocked = 0 ({on})",
                "value": f"{row['burst_blocked']} of {sum(b['messages'] for b in row['bursts'])}",
                "met": row["burst_blocked"] == 0})
    if difference is not None and "burst" in difference:
        added = difference["burst"]["blocked_added"]
        out.append({"target": "ordinary burst messages blocked because of the feature (on blocked, off not) = 0",
                    "value": f"{added} of {difference['burst']['messages']}", "met": added == 0})
    ratio = (comparison or {}).get("cpu_per_message")
    if comparison is not None:
        out.append({"target": f"/predict CPU per message with the feature on <= +{CPU_TARGET - 1:.0%} of off",
                    "value": "n/a" if ratio is None else f"{ratio - 1:+.1%}",
                    "met": ratio is not None and ratio <= CPU_TARGET})
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None, fmt: str = ".0f") -> str:
    return "n/a" if value is None else format(value, fmt)


def format_report(rows: Mapping[str, Mapping[str, Any]], comparison: Mapping[str, Any] | None,
                  checks: Sequence[Mapping[str, Any]],
                  difference: Mapping[str, Mapping[str, int]] | None = None) -> str:
    names = list(rows)
    lines: list[tuple[str, ...]] = [("", *names)]

    def add(label: str, fn: Any) -> None:
        lines.append((label, *(fn(rows[n]) for n in names)))

    add("messages sent", lambda r: str(r["messages"]))
    add("errors", lambda r: str(r["errors"]))
    add("campaign copies caught (block/review)", lambda r: _pct(r["campaign"]["recall"]))
    add("  after the 10th copy", lambda r: _pct(r["campaign"]["recall_after_10"]))
    add("  blocked", lambda r: _pct(r["campaign"]["blocked_share"]))
    add("copies passed before caught: median", lambda r: _num(r["campaign"]["passed_before_caught_median"], "g"))
    add("copies passed before caught: max", lambda r: _num(r["campaign"]["passed_before_caught_max"], "g"))
    add("campaigns never caught", lambda r: str(r["campaign"]["never_caught"]))
    add("burst messages blocked / review", lambda r: f"{r['burst_blocked']} / {r['burst_review']}")
    for kind in ("ordinary", "everyday"):
        add(f"{kind} blocked / review (of n)",
            lambda r, k=kind: f"{r[k]['blocked']} / {r[k]['review']} ({r[k]['messages']})")
    add("single spam caught", lambda r: _pct(_share(r["single_spam"])))
    add("latency p50 / p99 ms",
        lambda r: f"{_num(r['latency_ms']['p50'], '.1f')} / {_num(r['latency_ms']['p99'], '.1f')}")
    add("service CPU %", lambda r: _num(r.get("service_cpu_percent"), ".0f"))
    add("service CPU µs per message", lambda r: _num(r.get("cpu_us_per_message"), ".0f"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
           for line in lines]
    if comparison is not None:
        out.append(f"on / off: CPU per message x{_num(comparison['cpu_per_message'], '.3f')}, "
                   f"p99 x{_num(comparison['p99'], '.3f')}")
    if difference:
        out.append("")
        out.append("on against off, message by message (+: on blocked/caught it and off did not; -: the reverse)")
        out.append(f"  {'kind':<12} {'messages':>8} {'blocked +':>9} {'blocked -':>9} {'caught +':>8} {'caught -':>8}")
        for kind, d in difference.items():
            out.append(f"  {kind:<12} {d['messages']:>8} {d['blocked_added']:>9} {d['blocked_removed']:>9} "
                       f"{d['caught_added']:>8} {d['caught_removed']:>8}")
    for name in names:
        out.append("")
        out.append(f"{name}: campaign  senders  copies  contact  passed-before  first-caught  first-flagged  "
                   f"recall  after-10")
        for c in rows[name]["campaigns"]:
            out.append(f"  {c['name']:<12} {c['senders']:>5} {c['messages']:>7}  {c['contact_kind'] or '-':<7}  "
                       f"{c['passed_before_caught']:>13}  {_num(c['first_caught'], 'g'):>12}  "
                       f"{_num(c['first_flagged'], 'g'):>13}  {_pct(c['recall']):>6}  {_pct(c['recall_after_10']):>8}")
        for b in rows[name]["bursts"]:
            out.append(f"  {b['name']:<24} {b['senders']:>5} senders: {b['blocked']} blocked, {b['review']} review, "
                       f"{b['flagged']} marked campaign")
    if checks:
        out.append("")
        out += [f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['value']}" for t in checks]
    return "\n".join(out)


def _share(counts: Mapping[str, Any]) -> float | None:
    n = counts["messages"]
    return (counts["blocked"] + counts["review"]) / n if n else None
