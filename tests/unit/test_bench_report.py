"""The bench's table and JSON layout."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from antispam.bench import report


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "scenario": "local-2w GET 1 max", "variant": "plain", "service": "local-2w", "backend": "local", "workers": 2,
        "request": "get", "mode": "saturation", "target_rate": 0.0, "connections": 32,
        "window_s": 9.0, "requests": 9000, "ok": 9000, "errors": 0, "requests_per_s": 1000.0,
        "messages_per_s": 1000.0,
        "latency_ms": {"p50": 10.0, "p95": 20.0, "p99": 30.0, "max": 40.0, "mean": 11.0, "count": 9000.0},
        "statuses": {"200": 9000}, "error_kinds": {}, "service_cpu_percent": 190.0,
        "service_rss_mb": 900.0, "service_pss_mb": 700.0, "fraction_of_limit": 0.5,
        "cpu_us_per_message": 1900.0, "cpu_vs_pipeline": 5.28, "driver": "asyncio",
        "client_cpu_percent": 40.0, "other_cpu_percent": 1.0,
    }
    base.update(overrides)
    return base


def payload(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": report.SCHEMA, "started": "2026-01-01T00:00:00", "host": report.host_info(),
            "config": {}, "pipeline": None, "results": results, "targets": []}


def test_table_has_one_aligned_line_per_result() -> None:
    long = record(scenario="local-2w POST 10 1000-char max", request="post10long", text_chars=1000,
                  requests_per_s=21.0, messages_per_s=210.0, fraction_of_limit=None)
    table = report.format_table([record(), record(scenario="local-1w POST 100 max", messages_per_s=3456.0,
                                                  service_cpu_percent=None, fraction_of_limit=None), long])
    lines = table.splitlines()[:5]  # header, rule, three rows; the legend follows
    assert len({len(line) for line in lines}) == 1 and table.splitlines()[5].startswith("CPU % and RSS MB")
    assert "p99 ms" in lines[0] and "RSS MB" in lines[0] and "msg/s" in lines[0]
    assert "3456" in lines[3] and " -" in lines[3]  # unknown values print as "-"
    assert "50%" in lines[2]
    # The long-text row: labelled as such, with its messages (texts) per second.
    assert lines[4].startswith("local-2w POST 10 1000-char max ") and "  210 " in lines[4]
    assert "1000-char rows" in table and "1,000 characters" in table


def test_payload_layout_is_checked() -> None:
    assert report.check_payload(payload([record()])) == []
    broken = record()
    del broken["errors"]
    broken["latency_ms"] = {"p50": 1.0}
    problems = report.check_payload(payload([broken]))
    assert "results[0] lacks 'errors'" in problems
    assert any("latency_ms lacks 'p99'" in p for p in problems)
    assert report.check_payload({"schema": "other"})[0].startswith("schema is")


def test_json_has_no_nan(tmp_path: Path) -> None:
    empty = record(latency_ms={"p50": math.nan, "p95": math.nan, "p99": math.nan, "max": math.nan,
                               "mean": math.nan, "count": 0.0})
    path = report.write_json(tmp_path / "out" / "r.json", payload([empty]))
    text = path.read_text()
    assert "NaN" not in text
    assert json.loads(text)["results"][0]["latency_ms"]["p99"] is None


def test_default_path_is_in_the_ignored_folder() -> None:
    path = report.default_json_path()
    assert path.parts[0] == "bench-results" and path.suffix == ".json"
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text()
    assert "/bench-results/" in ignored


def test_pipeline_summary_names_the_three_stages() -> None:
    pipeline = {"version": 3, "messages": 100, "batch": 64, "rows_per_message": 2.2, "text_us": 230.0,
                "featurize_us": 5.0, "model_us": 12.0, "total_us": 247.0, "model_batch_ms": 0.8,
                "model_batch_rows": 141.0, "implied_messages_per_s": 4049.0,
                "end_to_end_messages_per_s": 3900.0, "tokenizer": "rjieba+jieba", "text_jieba_us": 920.0,
                "end_to_end_cpu_us": 310.0,
                "windowing": {"window": 20, "stride": 10, "cap": 64, "aggregation": "max", "char_backoff": True}}
    text = report.format_pipeline(pipeline)
    assert "(a) text pipeline" in text and "(b) featurizer" in text and "(c) model" in text
    assert "4049 messages/s" in text
    assert "12.0 µs/message" in text and "141 rows" in text  # the model stage is per message
    assert "rows per message 2.20" in text and "stride 10, cap 64" in text
    assert "CPU per message end to end 310.0 µs" in text
    assert "normalize + rjieba+jieba" in text and "plain jieba (not served)" in text and "4.0x (a)" in text
    assert report.check_payload({**payload([record()]), "pipeline": pipeline}) == []
    del pipeline["rows_per_message"]
    assert report.check_payload({**payload([record()]), "pipeline": pipeline}) == [
        "pipeline lacks 'rows_per_message'"]


def test_cpu_per_message_and_its_ratio_to_the_pipeline() -> None:
    pipeline = {"total_us": 400.0}
    get = record(service_cpu_percent=150.0, messages_per_s=1000.0)  # 1.5 CPU-s per s over 1000 msg/s
    grpc = record(scenario="grpc-1w POST 100 max", backend="grpc", service_cpu_percent=50.0, messages_per_s=2000.0,
                  model_server_cpu_percent=100.0)
    long = record(scenario="local-2w POST 10 1000-char max", text_chars=1000, service_cpu_percent=100.0,
                  messages_per_s=50.0)
    unknown = record(scenario="url GET 1 max", service_cpu_percent=None)
    idle = record(scenario="local-1w GET 1 @0/s", messages_per_s=0.0)
    for r in (get, grpc, long, unknown, idle):
        del r["cpu_us_per_message"], r["cpu_vs_pipeline"]
    report.add_cpu_per_message([get, grpc, long, unknown, idle], pipeline)
    assert get["cpu_us_per_message"] == 1500.0 and get["cpu_vs_pipeline"] == 3.75
    assert grpc["cpu_us_per_message"] == 250.0 and grpc["model_server_cpu_us_per_message"] == 500.0
    assert long["cpu_us_per_message"] == 20000.0 and long["cpu_vs_pipeline"] is None  # no pipeline figure for them
    assert unknown["cpu_us_per_message"] is None and unknown["cpu_vs_pipeline"] is None
    assert idle["cpu_us_per_message"] is None
    assert report.check_payload(payload([get, grpc, long, unknown, idle])) == []

    # The pipeline's own CPU per message is the denominator when the file has it (CPU over CPU).
    report.add_cpu_per_message([get], {"total_us": 400.0, "end_to_end_cpu_us": 600.0})
    assert get["cpu_vs_pipeline"] == 2.5

    report.add_cpu_per_message([get], None)  # --no-pipeline: CPU per message still, no ratio
    assert get["cpu_us_per_message"] == 1500.0 and get["cpu_vs_pipeline"] is None

    header, _rule, row = report.format_table([grpc]).splitlines()[:3]
    assert "CPU/msg" in header and "x pipe" in header
    assert "  250 " in row and " 0.62 " in row


def test_schema_3_requires_the_cpu_columns_and_the_variant() -> None:
    assert report.SCHEMA == "antispam-bench/3"
    old = record()
    del old["cpu_us_per_message"]
    assert "results[0] lacks 'cpu_us_per_message'" in report.check_payload(payload([old]))
    old = record()
    del old["variant"]  # an antispam-bench/2 row
    assert report.check_payload(payload([old])) == ["results[0] lacks 'variant'"]
    assert report.check_payload({**payload([record()]), "schema": "antispam-bench/2"})[0] == (
        "schema is 'antispam-bench/2', expected 'antispam-bench/3'")


def test_variant_rows_are_ratios_of_their_plain_rows() -> None:
    plain = record(scenario="local-2w GET 1 @250/s", mode="rate", target_rate=250.0, messages_per_s=250.0,
                   latency_ms={**record()["latency_ms"], "p50": 4.0, "p99": 10.0}, cpu_us_per_message=1000.0)
    lists = record(scenario="local-2w GET 1 @250/s +lists", variant="lists", mode="rate", target_rate=250.0,
                   messages_per_s=250.0, latency_ms={**record()["latency_ms"], "p50": 5.0, "p99": 12.0},
                   cpu_us_per_message=1100.0)
    explain = record(scenario="local-2w GET 1 @250/s +explain", variant="explain", mode="rate", target_rate=250.0,
                     messages_per_s=200.0, latency_ms={**record()["latency_ms"], "p50": 8.0, "p99": 30.0},
                     cpu_us_per_message=None)
    other = record(scenario="local-2w GET 1 max +explain", variant="explain")  # its plain row is not in the run
    results = [plain, lists, explain, other]
    report.add_vs_plain(results)
    assert "vs_plain" not in plain and other["vs_plain"] is None
    assert lists["vs_plain"] == {"messages_per_s": 1.0, "p50": 1.25, "p99": 1.2, "cpu_us_per_message": 1.1}
    assert explain["vs_plain"] == {"messages_per_s": 0.8, "p50": 2.0, "p99": 3.0, "cpu_us_per_message": None}
    assert report.check_payload(payload(results)) == []
    text = report.format_variants(results, {"block_terms": 10000, "block_patterns": 5, "allow_terms": 200,
                                            "allow_terms_with_digits": 20, "hits": {"share": 0.004}})
    lines = text.splitlines()
    assert lines[3].startswith("local-2w GET 1 @250/s +lists ") and lines[3].split()[-4:] == [
        "x1.00", "x1.25", "x1.20", "x1.10"]
    assert lines[4].split()[-4:] == ["x0.80", "x2.00", "x3.00", "-"]
    assert "10000 generated block terms" in text and "0.4% of the test texts" in text and "+explain" in text
    assert report.format_variants([plain]) == ""
    # The table keeps one aligned line per row with the longest labels.
    longest = record(scenario="local-2w POST 10 1000-char max +lists+explain", variant="lists+explain")
    assert len({len(line) for line in report.format_table([plain, longest]).splitlines()[:4]}) == 1


def test_the_faster_pipeline_measurement_counts_and_both_are_kept() -> None:
    def taken(implied: float, cpu: float) -> dict:
        return {"version": 3, "messages": 100, "batch": 64, "rows_per_message": 1.6, "text_us": 10.0,
                "featurize_us": 10.0, "model_us": 1e6 / implied - 20.0, "total_us": 1e6 / implied,
                "implied_messages_per_s": implied, "end_to_end_messages_per_s": implied * 0.8,
                "end_to_end_cpu_us": cpu, "model_batch_ms": 3.0}

    slow, fast = taken(10_000.0, 150.0), taken(12_000.0, 140.0)
    for before, after in ((slow, fast), (fast, slow)):
        best = report.faster_pipeline(before, after)
        assert best["implied_messages_per_s"] == 12_000.0 and best["end_to_end_cpu_us"] == 140.0
        assert [m["when"] for m in best["measurements"]] == ["before", "after"]
        assert {m["implied_messages_per_s"] for m in best["measurements"]} == {10_000.0, 12_000.0}
        assert "measured before and after the loads" in report.format_pipeline(best)
    alone = report.faster_pipeline(slow, None)  # --quick: one measurement
    assert alone["implied_messages_per_s"] == 10_000.0 and len(alone["measurements"]) == 1
    assert "before and after" not in report.format_pipeline(alone)
