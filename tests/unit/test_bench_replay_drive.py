"""The replay driver against a tiny Tornado app on loopback, and the judging of its answers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from antispam.bench import replay_report
from antispam.bench.replay import Group, Message, ReplayConfig, Trace
from antispam.bench.replay_drive import (
    Answer,
    changed_examples,
    difference,
    judge,
    parse_answer,
    passing,
    request_bytes,
    run_replay,
)
from antispam.cli import build_parser
from antispam.commands.bench import replay_settings_from
from antispam.errors import UserError
from tests.helpers.tiny_app import ServerThread

pytestmark = pytest.mark.unit


def trace_of(messages: list[Message], groups: list[Group]) -> Trace:
    return Trace(ReplayConfig(), sorted(messages, key=lambda m: m.at), groups)


def campaign(name: str, n: int, start: float = 0.0) -> tuple[list[Message], Group]:
    messages = [Message(start + i, f"广告{name}第{i}条 13800138000", f"{name}-s{i}", "campaign", name, i)
                for i in range(n)]
    return messages, Group(name, "campaign", "广告", n, n, start, start + n - 1, "mobile", "13800138000")


def answer(suggestion: str | None, flagged: bool = False) -> Answer:
    return Answer(200, 1.0, suggestion, "model", {"size": 3} if flagged else None)


def test_judge_counts_passes_before_caught_and_recall_after_the_10th() -> None:
    msgs, group = campaign("c1", 14)
    burst = [Message(100.0 + i, "新年快乐", f"b{i}", "burst", "burst-greeting", i) for i in range(3)]
    singles = [Message(200.0, "你好", "u1", "ordinary"), Message(201.0, "谢谢", "u2", "everyday"),
               Message(202.0, "发票", "u3", "single_spam")]
    trace = trace_of(msgs + burst + singles,
                     [group, Group("burst-greeting", "burst", "新年快乐", 3, 3, 100.0, 102.0)])
    # Copies 0-2 pass, 3 is reviewed, 4 passes, 5.. blocked except copy 12.
    camp = [answer("pass")] * 3 + [answer("review", True), answer("pass")] + \
        [answer("block", True)] * 7 + [answer("pass"), answer("block", True)]
    got = judge(trace, camp + [answer("block"), answer("pass"), answer("review")]
                + [answer("block"), answer("review"), answer("block")])
    c = got["campaigns"][0]
    assert c["passed_before_caught"] == 3 and c["first_caught"] == 3 and c["first_flagged"] == 3
    assert c["caught"] == 9 and c["blocked"] == 8 and c["flagged"] == 9
    assert c["after_10"] == 4 and c["caught_after_10"] == 3  # copies 10..13: block, block, pass, block
    assert got["campaign"]["recall"] == pytest.approx(9 / 14)
    assert got["campaign"]["recall_after_10"] == pytest.approx(3 / 4)
    assert got["campaign"]["passed_before_caught_median"] == 3 and got["campaign"]["never_caught"] == 0
    assert got["burst_blocked"] == 1 and got["burst_review"] == 1
    assert got["ordinary"] == {"messages": 1, "blocked": 1, "review": 0, "flagged": 0}
    assert got["everyday"]["review"] == 1 and got["single_spam"]["blocked"] == 1
    with pytest.raises(ValueError):
        judge(trace, camp)


def test_a_campaign_never_caught_counts_every_pass() -> None:
    msgs, group = campaign("c1", 5)
    got = judge(trace_of(msgs, [group]), [answer("pass")] * 4 + [Answer(None, 5.0, error="timeout")])
    c = got["campaigns"][0]
    assert c["first_caught"] is None and c["passed_before_caught"] == 4 and c["recall_after_10"] is None
    assert got["errors"] == 1 and got["error_kinds"] == {"timeout": 1}
    assert got["campaign"]["never_caught"] == 1


def test_difference_is_message_by_message() -> None:
    msgs, group = campaign("c1", 3)
    burst = [Message(10.0, "新年快乐", "b0", "burst", "burst-g", 0)]
    trace = trace_of(msgs + burst, [group])
    on = [answer("block"), answer("review"), answer("pass"), answer("block")]
    off = [answer("pass"), answer("review"), answer("block"), answer("review")]
    d = difference(trace, on, off)
    assert d["campaign"] == {"messages": 3, "blocked_added": 1, "blocked_removed": 1,
                             "caught_added": 1, "caught_removed": 1}
    assert d["burst"]["blocked_added"] == 1 and d["burst"]["caught_added"] == 0


def test_changed_examples_are_what_on_added() -> None:
    msgs = [Message(float(i), f"你好{i}", f"u{i}", "ordinary") for i in range(4)]
    trace = trace_of(msgs, [])
    on = [answer("review", True), answer("block"), answer("pass"), answer("review")]
    off = [answer("pass"), answer("review"), answer("pass"), answer("pass")]
    got = changed_examples(trace, on, off, limit=1)
    assert [(e["text"], e["on"], e["off"], e["campaign"]) for e in got] == [("你好0", "review", "pass", {"size": 3})]
    assert len(changed_examples(trace, on, off)) == 2


def test_changed_examples_name_an_errored_off_answer() -> None:
    """An off target that errored has no suggestion; the row says so instead of None, which the
    report's table could not format (a run crashed there before writing its JSON)."""
    trace = trace_of([Message(0.0, "你好", "u0", "ordinary")], [])
    got = changed_examples(trace, [answer("block")], [Answer(status=504, latency_ms=1.0, error="timeout")])
    assert [(e["on"], e["off"]) for e in got] == [("block", "error 504")]


def test_passing_asks_without_a_sender() -> None:
    import asyncio

    seen: list[str | None] = []

    def judge_item(text: str, sender: str | None) -> dict[str, Any]:
        seen.append(sender)
        return {"suggestion": "pass" if "漏" in text else "block"}

    with ServerThread(judge=judge_item) as server:
        got = asyncio.run(passing(server.url, ["漏网广告一", "广告二", "漏网广告三"]))
    assert got == ["漏网广告一", "漏网广告三"] and seen == [None, None, None]


def test_parse_answer() -> None:
    assert parse_answer(200, b'{"data": {"suggestion": "review", "decided_by": "model"}}', 2.0).suggestion == "review"
    flagged = parse_answer(200, b'{"data": {"suggestion": "block", "campaign": {"size": 4}}}', 2.0)
    assert flagged.campaign == {"size": 4}
    assert parse_answer(200, b"[]", 1.0).error == "bad_body"
    assert parse_answer(429, b"{}", 1.0).error == "http_429"


def test_request_carries_the_sender() -> None:
    raw = request_bytes("127.0.0.1", 80, Message(0.0, "加 微信&x=1", "u 7", "ordinary"), {"policy": "p"})
    line = raw.split(b"\r\n")[0].decode()
    assert line == "GET /predict?text=%E5%8A%A0%20%E5%BE%AE%E4%BF%A1%26x%3D1&sender_id=u%207&policy=p HTTP/1.1"


def test_replay_sends_every_message_to_every_target_in_order() -> None:
    seen: list[tuple[str, str | None]] = []
    lock = threading.Lock()

    def judge_item(text: str, sender: str | None) -> dict[str, Any]:
        with lock:
            seen.append((text, sender))
        return {"suggestion": "block" if "广告" in text else "pass", "decided_by": "model"}

    msgs, group = campaign("c1", 12, start=0.5)
    others = [Message(i * 0.3, f"你好{i}", f"u{i}", "ordinary") for i in range(20)]
    trace = trace_of(msgs + others, [group])
    with ServerThread(judge=judge_item) as a, ServerThread(judge=judge_item) as b:
        answers, took = run_replay(trace, {"a": a.url, "b": b.url}, speedup=20.0, timeout=5.0,
                                   without_sender=("b",))
    assert set(answers) == {"a", "b"}
    for name in ("a", "b"):
        assert len(answers[name]) == len(trace.messages)
        assert all(x.error is None for x in answers[name])
        assert [x.suggestion for x in answers[name]] == \
            ["block" if m.kind == "campaign" else "pass" for m in trace.messages]
    # "a" got every message with its sender, "b" the same texts without one.
    expected = [(m.text, m.sender) for m in trace.messages] + [(m.text, None) for m in trace.messages]
    assert sorted(seen, key=str) == sorted(expected, key=str)
    # Compressed time: the trace's last message is due at its time / speedup.
    assert took >= trace.messages[-1].at / 20.0
    got = judge(trace, answers["a"])
    assert got["campaign"]["recall"] == 1.0 and got["ordinary"]["blocked"] == 0


def test_report_targets_and_table() -> None:
    msgs, group = campaign("c1", 12)
    burst = [Message(50.0, "新年快乐", "b0", "burst", "burst-greeting", 0)]
    trace = trace_of(msgs + burst, [group, Group("burst-greeting", "burst", "新年快乐", 1, 1, 50.0, 50.0)])
    on = judge(trace, [answer("block", True)] * 12 + [answer("pass")])
    off = judge(trace, [answer("pass")] * 13)
    on.update(service_cpu_percent=50.0, cpu_us_per_message=1100.0)
    off.update(service_cpu_percent=45.0, cpu_us_per_message=1000.0)
    rows = {"off": off, "on": on}
    comparison = replay_report.compare(rows)
    assert comparison is not None and comparison["cpu_per_message"] == pytest.approx(1.1)
    checks = replay_report.targets(rows, comparison)
    assert [c["met"] for c in checks] == [True, True, True]
    on["cpu_us_per_message"] = 1200.0
    on["burst_blocked"] = 1
    checks = replay_report.targets(rows, replay_report.compare(rows))
    assert [c["met"] for c in checks] == [True, False, False]
    text = replay_report.format_report(rows, comparison, checks)
    assert "campaign-" not in text and "c1" in text and "[MISSED]" in text
    assert replay_report.cpu_us_per_message(50.0, 10.0, 1000) == pytest.approx(5000.0)
    assert replay_report.cpu_us_per_message(None, 10.0, 1000) is None


@pytest.mark.parametrize("argv, message", [
    (["--replay-speedup", "0"], "must be > 0"),
    (["--replay-span", "5"], "at least 10 minutes"),
    (["--replay-campaigns", "101"], "from 0 to 100"),
    (["--replay-min-senders", "1"], "at least 2"),
    (["--scenarios", "local-1w,local-2w"], "one --scenarios"),
    (["--variants", "explain"], "takes none of"),
    (["--url", "http://10.1.2.3:80"], "loopback"),
])
def test_bad_replay_arguments_are_user_errors(argv: list[str], message: str) -> None:
    args = build_parser().parse_args(["bench", "--replay", *argv])
    with pytest.raises(UserError, match=message):
        replay_settings_from(args)


def test_replay_settings_defaults() -> None:
    settings = replay_settings_from(build_parser().parse_args(["bench", "--replay"]))
    assert settings["scenario"] == "local-1w" and settings["speedup"] == 30.0
    assert settings["service_window_s"] == pytest.approx(600.0 / 30.0)
