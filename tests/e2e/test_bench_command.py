"""``antispam bench`` end to end, quick, on a tiny model and a tiny corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from antispam.bench import report
from antispam.cli import main


def test_quick_bench_end_to_end(tmp_path: Path, tiny_corpus: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process (TensorFlow is usually loaded already); the services are subprocesses."""
    from antispam.testing.tinymodel import build_version

    build_version(tmp_path / "models" / "rnn")  # the default model name
    out = tmp_path / "results.json"
    monkeypatch.chdir(tmp_path)
    code = main(["bench", "--quick", "--model-base", str(tmp_path / "models"), "--data", str(tiny_corpus),
                 "--duration", "1", "--warmup", "0.2", "--rates", "20", "--requests", "get,post10,post10long",
                 "--json", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    payload = json.loads(out.read_text())
    assert report.check_payload(payload) == []
    rows = {r["scenario"]: r for r in payload["results"]}
    assert set(rows) == {"local-1w GET 1 @20/s", "local-1w GET 1 max", "local-1w POST 10 max",
                         "local-1w POST 10 1000-char max"}
    for row in rows.values():
        assert row["errors"] == 0 and row["ok"] > 0, row
        assert row["service_cpu_percent"] > 0 and row["service_rss_mb"] > 50
        assert row["cpu_us_per_message"] > 0
    assert rows["local-1w GET 1 @20/s"]["ok"] == 16  # 20/s over the 0.8 s recorded window
    for scenario in ("local-1w POST 10 max", "local-1w POST 10 1000-char max"):
        assert rows[scenario]["messages_per_s"] == pytest.approx(10 * rows[scenario]["requests_per_s"])
        assert rows[scenario]["texts_per_request"] == 10
    long = rows["local-1w POST 10 1000-char max"]
    assert long["request"] == "post10long" and long["text_chars"] == 1000
    assert long["fraction_of_limit"] is None  # the limit is measured on the test texts
    assert all(0 < r["fraction_of_limit"] for r in rows.values() if r is not long)
    assert long["cpu_vs_pipeline"] is None
    for r in rows.values():
        if r is not long:
            assert r["cpu_vs_pipeline"] == pytest.approx(r["cpu_us_per_message"]
                                                     / payload["pipeline"]["end_to_end_cpu_us"])
    assert payload["config"]["requests"] == ["get", "post10", "post10long"]
    assert payload["config"]["local_requests"] == []
    assert payload["pipeline"]["implied_messages_per_s"] > 0
    # The table went to stdout, with every row.
    for scenario in rows:
        assert scenario in stdout
    assert "raw pipeline limit" in stdout
    assert not (tmp_path / "feedback.db").exists()  # the bench's services write nothing here


def test_quick_bench_with_lists_and_explain_variants(tmp_path: Path, tiny_corpus: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The same loads plain, with generated term lists loaded, and with explain=true, in one table."""
    from antispam.testing.tinymodel import build_version

    build_version(tmp_path / "models" / "rnn")
    out = tmp_path / "results.json"
    monkeypatch.chdir(tmp_path)
    code = main(["bench", "--quick", "--no-pipeline", "--model-base", str(tmp_path / "models"),
                 "--data", str(tiny_corpus), "--duration", "1", "--warmup", "0.2", "--rates", "20",
                 "--requests", "get,post10", "--variants", "plain,lists,explain", "--lists-terms", "300",
                 "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(out.read_text())
    assert report.check_payload(payload) == [] and payload["schema"] == "antispam-bench/3"
    assert [r["scenario"] for r in payload["results"]] == [
        f"local-1w {load}{suffix}" for load in ("GET 1 @20/s", "GET 1 max", "POST 10 max")
        for suffix in ("", " +lists", " +explain")]
    for row in payload["results"]:
        assert row["errors"] == 0 and row["ok"] > 0, row  # explain rows: every answer had reasons
        assert (row["variant"] == "plain") == ("vs_plain" not in row)
    assert payload["results"][1]["vs_plain"]["messages_per_s"] == pytest.approx(1.0, abs=0.3)  # the fixed rate
    assert payload["lists"]["block_terms"] == 300 and payload["lists"]["hits"]["texts"] > 0
    assert payload["lists"]["served"] == {"default": {"block": 305, "allow": 220}}  # from the service's GET /lists
    assert payload["config"]["variants"] == ["plain", "lists", "explain"]
    assert "with the generated lists" in captured.err and "they decide" in captured.err
    assert "against the plain row of the same service and load" in captured.out
    assert "local-1w POST 10 max +explain" in captured.out


@pytest.mark.parametrize("argv, message", [
    (["--url", "http://192.0.2.1:8000"], "loopback"),
    (["--rates", "abc"], "comma-separated numbers"),
    (["--scenarios", "local-9w"], "unknown scenario"),
    (["--requests", "put"], "unknown request kind"),
])
def test_bad_arguments_are_user_errors(argv: list[str], message: str, tiny_corpus: Path,
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--data", str(tiny_corpus), "--model-base", str(tmp_path), "--no-pipeline", *argv])
    assert code == 2
    assert message in capsys.readouterr().err


def test_compare_refuses_a_file_of_another_schema_before_any_work(
        tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from antispam.testing.tinymodel import build_version

    build_version(tmp_path / "models" / "rnn")
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": "antispam-bench/1", "results": []}))
    code = main(["bench", "--quick", "--data", str(tiny_corpus), "--model-base", str(tmp_path / "models"),
                 "--compare", str(old), "--json", str(tmp_path / "new.json")])
    err = capsys.readouterr().err
    assert code == 2 and "has schema 'antispam-bench/1'" in err and "antispam-bench/3" in err
    assert "measuring" not in err and not (tmp_path / "new.json").exists()


def test_no_model_fails_before_any_work(tiny_corpus: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--quick", "--data", str(tiny_corpus), "--model-base", str(tmp_path / "none")])
    assert code == 2 and "no complete model version" in capsys.readouterr().err


def test_bench_a_running_service_by_url(tmp_path: Path, tiny_corpus: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from antispam.backends.local import LocalBackend
    from antispam.config import ServeConfig
    from antispam.testing.tinymodel import build_version
    from tests.helpers.live_server import LiveServer

    build_version(tmp_path / "models" / "rnn")
    config = ServeConfig(model_base=str(tmp_path / "models"), poll_seconds=0, cache_size=0)
    # A baseline with this run's saturation row (made 1,000,000 msg/s: this run regresses) and one
    # row this run does not have.
    base_row = {"scenario": "url GET 1 max", "messages_per_s": 1e6, "errors": 0, "cpu_us_per_message": None,
                "latency_ms": {"p99": 1e6}}
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"schema": report.SCHEMA, "config": {"quick": True}, "results": [
        base_row, {**base_row, "scenario": "url POST 100 max"}]}))
    server = LiveServer(config, LocalBackend).start()
    try:
        out = tmp_path / "url.json"
        code = main(["bench", "--url", server.url, "--quick", "--no-pipeline", "--requests", "get",
                     "--duration", "0.6", "--warmup", "0.1", "--rates", "20", "--data", str(tiny_corpus),
                     "--json", str(out), "--compare", str(baseline)])
    finally:
        server.stop()
    assert code == 0
    captured = capsys.readouterr()
    stdout = captured.out
    assert "driving " + server.url in captured.err
    assert f"compared with {baseline}" in stdout
    assert "url GET 1 @20/s" in stdout and "new: not in the baseline" in stdout
    assert "url POST 100 max" in stdout and "missing in this run" in stdout
    assert "1 regressed row(s): url GET 1 max (msg/s)" in stdout
    payload = json.loads(out.read_text())
    assert [r["status"] for r in payload["comparison"]["rows"]] == ["new", "compared", "missing"]
    assert report.check_payload(payload) == []
    assert [r["scenario"] for r in payload["results"]] == ["url GET 1 @20/s", "url GET 1 max"]
    assert all(r["errors"] == 0 for r in payload["results"])
    # The service is this test process (the server runs in a thread): found by its listening port.
    assert payload["results"][1]["service_cpu_percent"] > 0
    assert payload["results"][1]["cpu_us_per_message"] > 0 and payload["results"][1]["cpu_vs_pipeline"] is None


def test_replay_end_to_end_on_a_tiny_model(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``bench --replay``: the trace, both services (off without sender ids, on with a policy
    that acts on campaigns), every message answered by both, the figures and the JSON. The
    tiny model's verdicts mean nothing; what is checked is that everything ran and adds up."""
    from antispam.bench import replay_report
    from antispam.testing.tinymodel import build_version
    from tests.helpers.corpus import write_corpus

    build_version(tmp_path / "models" / "rnn")
    # Long, distinct adverts, so the test split (a tenth, by hash) has a few campaigns' worth.
    heads = ["本店", "新店", "我司", "贵宾", "会员", "商场", "门店", "专柜", "工厂", "总部"]
    spam = [f"{h} 年末 特惠 第 {n} 波 ， 全场 商品 {n} 折 起 ， 详询 xxxxxxxxxxx 王 经理 ， 欢迎 光临 选购"
            for h in heads for n in ("一", "二", "三", "四", "五", "六", "七", "八")]
    passed = [f"今天 {d} 我们 {w} 见面 吧" for d in ("上午", "下午", "晚上", "中午") for w in "一二三四五六七八九十"]
    corpus = write_corpus(tmp_path / "corpus", spam, passed)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "replay.json"
    code = main(["bench", "--replay", "--model-base", str(tmp_path / "models"), "--data", str(corpus),
                 "--replay-campaigns", "2", "--replay-speedup", "120", "--replay-span", "10",
                 "--replay-min-senders", "3", "--warmup", "1", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(out.read_text())
    assert payload["schema"] == replay_report.SCHEMA
    trace = payload["trace"]
    assert set(payload["results"]) == {"off", "on"}
    for name, row in payload["results"].items():
        assert row["messages"] == trace["messages"] and row["errors"] == 0, (name, row["error_kinds"])
        assert row["service_cpu_percent"] > 0 and row["cpu_us_per_message"] > 0
        assert [c["name"] for c in row["campaigns"]] == ["campaign-00", "campaign-01"]
        assert row["burst_blocked"] + row["burst_review"] <= 800
    # Only the on service saw senders: only it marks campaigns (the bursts cross any threshold).
    assert sum(b["flagged"] for b in payload["results"]["off"]["bursts"]) == 0
    assert sum(b["flagged"] for b in payload["results"]["on"]["bursts"]) > 0
    assert payload["comparison"]["cpu_per_message"] > 0
    assert {t["target"].split(" ")[0] for t in payload["targets"]} >= {"campaign", "ordinary", "/predict"}
    assert "on / off: CPU per message" in captured.out and "results written to" in captured.out
    assert payload["config"]["service_window_s"] == pytest.approx(5.0)
