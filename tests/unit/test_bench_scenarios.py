"""What the bench drives: request kinds, load plans per scenario, the long texts (no service)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from antispam.bench import scenarios
from antispam.bench.scenarios import LONG_TEXT_CHARS, Load, long_texts, parse_request, plan
from antispam.cli import build_parser
from antispam.commands.bench import settings_from
from antispam.errors import UserError

TEXTS = ["代开发票，优惠贷款，加微信", "妈妈，我们明天回家吃晚饭", "今天开会", "ok 123", "a&b=c?d #e"]


def corpus(n: int = 200) -> list[str]:
    """Distinct texts of uneven length, like the test split's."""
    return [f"第{i}条：" + "开会吃饭回家发票"[: i % 8 + 1] * (i % 13 + 1) for i in range(n)]


def test_long_texts_are_exactly_1000_characters_of_consecutive_texts() -> None:
    texts = corpus()
    out = long_texts(texts)
    assert LONG_TEXT_CHARS == 1000
    assert len(out) >= 2 and all(len(t) == 1000 for t in out)
    # Each is the next texts in order, joined with 。 and cut at 1,000 characters.
    joined = "。".join(texts)
    position = 0
    for text in out:
        assert joined.startswith(text, position)
        first = joined.count("。", 0, position)
        assert text.startswith(texts[first])  # starts at a text boundary
        parts = text.split("。")
        assert parts[:-1] == texts[first:first + len(parts) - 1]
        assert texts[first + len(parts) - 1].startswith(parts[-1])  # the last one is cut
        position += len("。".join(texts[first:first + len(parts)])) + 1  # the next unused text


def test_long_texts_are_deterministic_and_use_only_the_given_texts() -> None:
    texts = corpus()
    assert long_texts(texts) == long_texts(list(texts))
    allowed = set("".join(texts)) | {"。"}
    assert all(set(t) <= allowed for t in long_texts(texts))
    # Other texts give other long texts: nothing comes from anywhere else.
    assert long_texts(texts[100:]) != long_texts(texts)
    assert set(long_texts(["甲乙"] * 600)[0]) == {"甲", "乙", "。"}


def test_long_texts_count_and_leftovers() -> None:
    texts = ["字" * 100] * 25  # 10 of them joined are 1,009 characters: 10 texts per long text
    out = long_texts(texts)
    assert out == ["。".join(["字" * 100] * 10)[:1000]] * 2  # the last 5 texts are dropped
    assert long_texts(["字" * 99] * 11) == ["。".join(["字" * 99] * 11)[:1000]]  # 999 is not enough
    assert long_texts(["x" * 2500]) == ["x" * 1000]  # a text longer than 1,000 is cut


def test_too_few_characters_cycle_to_make_one() -> None:
    out = long_texts(TEXTS)  # about 50 characters in all
    assert len(out) == 1 and len(out[0]) == 1000
    assert out[0].startswith("。".join(TEXTS) + "。" + TEXTS[0])
    assert long_texts(["", "好"]) == ["好。" * 500]  # empty texts are skipped
    with pytest.raises(UserError):
        long_texts(["", ""])


@pytest.mark.parametrize("request_name, kind, batch, long, label", [
    ("get", "get", 1, False, "GET 1 max"),
    ("post10", "post", 10, False, "POST 10 max"),
    ("post100", "post", 100, False, "POST 100 max"),
    ("post10long", "post", 10, True, "POST 10 1000-char max"),
    ("post3long", "post", 3, True, "POST 3 1000-char max"),
])
def test_request_kinds(request_name: str, kind: str, batch: int, long: bool, label: str) -> None:
    assert parse_request(request_name) == request_name
    load = Load(request_name, "saturation")
    assert (load.kind, load.batch, load.long, load.label) == (kind, batch, long, label)
    assert load.text_chars == (1000 if long else None)


@pytest.mark.parametrize("name", ["put", "post", "postlong", "post0long", "getlong", "post10short", "long"])
def test_unknown_request_kinds(name: str) -> None:
    with pytest.raises(UserError, match="unknown request kind"):
        parse_request(name)


def test_plan_rates_for_get_and_saturation_for_every_kind() -> None:
    loads = plan(("get", "post10", "post100", "post10long"), (250.0, 500.0))
    assert [(x.request, x.mode, x.rate) for x in loads] == [
        ("get", "rate", 250.0), ("get", "rate", 500.0), ("get", "saturation", 0.0),
        ("post10", "saturation", 0.0), ("post100", "saturation", 0.0), ("post10long", "saturation", 0.0)]
    assert [x.connections for x in loads] == [64, 64, 64, 16, 12, 12]
    assert [x.connections for x in plan(("post10long",), (), connections=2)] == [2]


def test_a_share_of_saturation_runs_after_the_saturation_row_with_a_stable_label() -> None:
    loads = plan(("get", "post10"), (250.0,), shares=(0.5,))
    assert [(x.request, x.mode, x.share) for x in loads] == [
        ("get", "rate", 0.0), ("get", "saturation", 0.0), ("post10", "saturation", 0.0), ("get", "rate", 0.5)]
    assert loads[-1].label == "GET 1 @50% of max"  # the same in every run, whatever the rate was
    assert plan(("post10",), (250.0,), shares=(0.5,)) == [Load("post10", "saturation", 0.0, 16)]


def test_rates_take_percentages_of_saturation() -> None:
    settings = settings_from(bench_args("--rates", "100,25%,50%"))
    assert settings["rates"] == [100.0] and settings["rate_shares"] == [0.25, 0.5]
    assert settings_from(bench_args())["rate_shares"] == [0.5]  # the default measures half load
    for bad in ("150%", "0%", "x%"):
        with pytest.raises(UserError):
            settings_from(bench_args("--rates", bad))


def test_drive_sets_the_share_rate_from_the_measured_saturation(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from antispam.bench import load as load_module
    from antispam.bench.load import LoadResult

    sent: list[tuple[str, float]] = []

    def fake_run(spec: Any, workdir: Path) -> LoadResult:
        sent.append((spec.mode, spec.rate))
        rps = 800.0 if spec.mode == "saturation" else spec.rate
        return LoadResult(mode=spec.mode, kind=spec.kind, batch=spec.batch, target_rate=spec.rate,
                          connections=spec.connections, window_s=1.0, requests=int(rps), ok=int(rps), errors=0,
                          messages_ok=int(rps), requests_per_s=rps, messages_per_s=rps,
                          latency_ms={"p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 4.0, "mean": 1.5, "count": rps})

    monkeypatch.setattr(load_module, "run_in_subprocess", fake_run)
    service = scenarios.Service("url", "url", 0)
    records = scenarios.drive(service, "http://127.0.0.1:1", None, plan(("get",), (), shares=(0.5,)), ["t"],
                              duration=1.0, warmup=0.0, timeout=1.0, workdir=tmp_path)
    assert sent == [("saturation", 0.0), ("rate", 400.0)]
    assert records[-1]["scenario"] == "url GET 1 @50% of max" and records[-1]["target_rate"] == 400.0
    with pytest.raises(UserError, match="needs the GET saturation row"):
        scenarios.drive(service, "http://127.0.0.1:1", None, [Load("get", "rate", 0.0, 4, 0.5)], ["t"],
                        duration=1.0, warmup=0.0, timeout=1.0, workdir=tmp_path)


def bench_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *argv])


def test_long_texts_are_on_by_default_for_the_local_scenarios_only() -> None:
    settings = settings_from(bench_args())
    assert settings["requests"] == ["get", "post10", "post100"]
    assert settings["local_requests"] == ["post10long"]
    services = scenarios.services_by_name(tuple(settings["scenarios"]))
    kinds = {s.name: scenarios.requests_for(s, tuple(settings["requests"]), tuple(settings["local_requests"]))
             for s in services}
    assert kinds == {"local-1w": ("get", "post10", "post100", "post10long"),
                     "local-2w": ("get", "post10", "post100", "post10long"),
                     "grpc-1w": ("get", "post10", "post100")}
    assert settings_from(bench_args("--quick"))["local_requests"] == ["post10long"]


def test_explicit_requests_are_exactly_what_runs() -> None:
    settings = settings_from(bench_args("--requests", "get,post10"))
    assert settings["requests"] == ["get", "post10"] and settings["local_requests"] == []
    settings = settings_from(bench_args("--requests", "post10long", "--scenarios", "grpc-1w"))
    assert settings["requests"] == ["post10long"]
    assert scenarios.requests_for(scenarios.SERVICES["grpc-1w"], ("post10long",)) == ("post10long",)
    # Asked for explicitly and by default at once: driven once.
    assert scenarios.requests_for(scenarios.SERVICES["local-1w"], ("post10long", "get"), ("post10long",)) == (
        "post10long", "get")
