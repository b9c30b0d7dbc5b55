"""``antispam bench --compare``: row matching, deltas, regressions, and refusing other schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from antispam.bench import compare, report
from antispam.errors import UserError
from tests.unit.test_bench_report import payload, record


def row(scenario: str, msg: float = 1000.0, p99: float = 30.0, cpu: float | None = 1500.0, errors: int = 0,
        **extra: Any) -> dict[str, Any]:
    latency = {"p50": 10.0, "p95": 20.0, "p99": p99, "max": 40.0, "mean": 11.0, "count": 100.0}
    return record(scenario=scenario, messages_per_s=msg, latency_ms=latency, cpu_us_per_message=cpu,
                  errors=errors, **extra)


def by_scenario(rows: list[compare.RowComparison]) -> dict[str, compare.RowComparison]:
    return {r.scenario: r for r in rows}


def test_changes_within_the_tolerance_are_not_regressions() -> None:
    before = [row("a", msg=1000, p99=30.0, cpu=1500)]
    after = [row("a", msg=950, p99=32.0, cpu=1600)]  # -5 %, +6.7 %, +6.7 %
    (a,) = compare.compare(after, before, tolerance=0.10)
    assert a.status == "compared" and a.regressions == []
    assert [d.metric for d in a.deltas] == ["msg/s", "p99 ms", "CPU µs/msg"]
    assert a.deltas[0].change == pytest.approx(-0.05) and a.deltas[1].change == pytest.approx(2 / 30)


def test_each_metric_regresses_in_its_own_direction() -> None:
    before = [row("slower", msg=1000), row("later", p99=30.0), row("costlier", cpu=1000), row("failing"),
              row("better", msg=1000, p99=30.0, cpu=1000)]
    after = [row("slower", msg=850), row("later", p99=40.0), row("costlier", cpu=1200), row("failing", errors=3),
             row("better", msg=2000, p99=10.0, cpu=500)]
    rows = by_scenario(compare.compare(after, before, tolerance=0.10))
    assert rows["slower"].regressions == ["msg/s"]
    assert rows["later"].regressions == ["p99 ms"]
    assert rows["costlier"].regressions == ["CPU µs/msg"]
    assert rows["failing"].regressions == ["errors"]
    assert rows["better"].regressions == []  # improvements are never regressions


def test_missing_and_new_rows_are_reported_not_raised() -> None:
    before = [row("kept"), row("gone")]
    after = [row("kept"), row("added")]
    rows = compare.compare(after, before)
    assert [(r.scenario, r.status) for r in rows] == [("kept", "compared"), ("added", "new"), ("gone", "missing")]
    text = compare.format_comparison(rows, baseline="old.json", tolerance=0.1)
    assert "gone" in text and "missing in this run" in text and "new: not in the baseline" in text
    assert "no regression beyond the tolerance; 1 baseline row(s) missing in this run" in text


def test_unknown_values_compare_as_unknown() -> None:
    before = [row("a", cpu=None), row("b", msg=0.0)]
    after = [row("a", cpu=1500), row("b", msg=100.0)]
    rows = by_scenario(compare.compare(after, before))
    cpu = rows["a"].deltas[2]
    assert (cpu.before, cpu.after, cpu.change, cpu.regression) == (None, 1500.0, None, False)
    assert rows["b"].deltas[0].change is None  # from 0: no ratio
    assert "- -> 1500" in compare.format_comparison(list(rows.values()), baseline="b.json", tolerance=0.1)


def test_the_table_marks_regressions() -> None:
    rows = compare.compare([row("local-2w GET 1 max", msg=800, errors=2)], [row("local-2w GET 1 max")])
    text = compare.format_comparison(rows, baseline="base.json", tolerance=0.1,
                                     notes=["the baseline ran with other settings: duration: 10.0 -> 1.5"])
    lines = text.splitlines()
    assert lines[0].startswith("compared with base.json") and "10%" in lines[0]
    line = next(line for line in lines if line.startswith("local-2w GET 1 max"))
    assert "1000 -> 800 (-20%) !" in line and "0 -> 2 !" in line
    assert "1 regressed row(s): local-2w GET 1 max (msg/s, errors)" in text
    assert lines[-1] == "note: the baseline ran with other settings: duration: 10.0 -> 1.5"
    doc = compare.to_json(rows, baseline="base.json", tolerance=0.1)
    assert json.loads(json.dumps(doc))["rows"][0]["regressions"] == ["msg/s", "errors"]


def test_a_busy_machine_is_noted() -> None:
    quiet, busy = [row("a", other_cpu_percent=3.0)], [row("a", other_cpu_percent=90.0)]
    assert compare.busy_machine_note(quiet, quiet) is None
    note = compare.busy_machine_note(busy, quiet)
    assert note is not None and "up to 3% CPU during the baseline and 90% during this run" in note
    assert compare.busy_machine_note([row("a", other_cpu_percent=None)], []) is None


def test_settings_differences() -> None:
    assert compare.settings_differences({"quick": True, "duration": 1.5, "rates": [50]},
                                        {"quick": False, "duration": 1.5, "rates": [250]}) == [
        "quick: False -> True"]


def test_a_saved_file_of_this_schema_loads(tmp_path: Path) -> None:
    path = report.write_json(tmp_path / "base.json", payload([record()]))
    assert compare.load_baseline(path)["results"][0]["scenario"] == "local-2w GET 1 max"


@pytest.mark.parametrize("content, message", [
    ({**payload([record()]), "schema": "antispam-bench/1"}, "has schema 'antispam-bench/1'"),
    ({"results": []}, "has schema None"),
    ([1, 2], "not a bench results file"),
    ({**payload([]), "results": [{"no": "scenario"}]}, "no usable 'results'"),
    ("not json", "is not JSON"),
], ids=["schema 1", "no schema", "a list", "bad results", "not JSON"])
def test_other_files_are_refused_with_a_clear_message(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "base.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        compare.load_baseline(path)
    if "schema 'antispam-bench/1'" in message:
        assert "antispam-bench/3" in str(info.value) and "Run the baseline again" in str(info.value)


def test_a_schema_2_file_is_compared_as_plain_rows(tmp_path: Path) -> None:
    old = record()
    old.pop("variant", None)
    path = tmp_path / "base.json"
    path.write_text(json.dumps({**payload([old]), "schema": "antispam-bench/2"}))
    baseline = compare.load_baseline(path)
    now = [record(), record(scenario="local-2w GET 1 max +explain", variant="explain")]
    rows = compare.compare(now, baseline["results"])
    assert [(r.scenario, r.status) for r in rows] == [("local-2w GET 1 max", "compared"),
                                                      ("local-2w GET 1 max +explain", "new")]


def test_a_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        compare.load_baseline(tmp_path / "none.json")
