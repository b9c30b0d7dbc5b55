"""The console's Live numbers: quantiles from histogram buckets, windows over the snapshot ring
buffer (a fake clock), and the sampling timer that ends with its owner."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from antispam.console.live import LiveStats, histogram_quantile
from antispam.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_quantile_of_nothing_is_none() -> None:
    assert histogram_quantile(0.5, {}) == (None, False)
    assert histogram_quantile(0.5, {"0.1": 0, "+Inf": 0}) == (None, False)


def test_quantile_interpolates_inside_the_bucket() -> None:
    buckets = {"0.01": 0, "0.02": 10, "0.05": 10, "+Inf": 10}
    value, above = histogram_quantile(0.5, buckets)
    assert not above and value == pytest.approx(0.015)
    assert histogram_quantile(0.99, buckets)[0] == pytest.approx(0.0199)
    # All in the first bucket: between 0 and its bound.
    assert histogram_quantile(0.5, {"0.001": 4, "+Inf": 4})[0] == pytest.approx(0.0005)


def test_quantile_past_the_largest_bucket_says_so() -> None:
    value, above = histogram_quantile(0.99, {"1.0": 90, "5.0": 95, "+Inf": 100})
    assert (value, above) == (5.0, True)
    assert histogram_quantile(0.5, {"1.0": 90, "5.0": 95, "+Inf": 100}) == (pytest.approx(0.5 / 0.9), False)


def predict(metrics: Metrics, seconds: float, suggestion: str = "pass", status: int = 200) -> None:
    metrics.observe_request("predict", "GET", status, seconds)
    if status == 200:
        metrics.request_texts.observe(1)
        metrics.observe_verdicts([suggestion])


def test_window_is_the_difference_since_the_oldest_snapshot_inside_it() -> None:
    clock, metrics = Clock(), Metrics()
    stats = LiveStats(metrics.registry, clock=clock, wall_clock=clock)
    for minute in range(8):  # 8 minutes, 6 requests a minute, snapshots every 10 s
        for _ in range(6):
            clock.now += 10
            predict(metrics, 0.004, "block" if minute < 4 else "pass")
            stats.sample()
    predict(metrics, 3.0, status=503)
    summary = stats.summary(minutes=2)
    window = summary["window"]
    assert window["seconds"] == pytest.approx(120)
    assert window["predict"]["requests"] == 13  # 12 in two minutes, and the 503 since the last snapshot
    assert window["predict"]["requests_per_second"] == pytest.approx(13 / 120, abs=1e-4)
    assert window["verdicts"] == {"pass": 12}
    assert window["errors"]["server"] == 1
    assert window["predict"]["latency_ms"]["p50"] == pytest.approx(2.5 + 2.5 * (6.5 / 12), abs=1e-3)
    assert window["predict"]["latency_ms"]["p99"] > 2500  # the slow 503 is in the 2.5-5 s bucket
    assert len(summary["series"]) == 12
    assert summary["series"][-1]["errors"] == 0  # the last 10-s step; the 503 is after it
    since = summary["since_start"]
    assert since["predict"]["requests"] == 49 and since["verdicts"] == {"block": 24, "pass": 24}


def test_rates_need_a_second_and_the_buffer_keeps_ten_minutes() -> None:
    clock, metrics = Clock(), Metrics()
    stats = LiveStats(metrics.registry, clock=clock, wall_clock=clock)
    predict(metrics, 0.01)
    clock.now += 0.2
    assert stats.summary(1)["window"]["predict"]["requests_per_second"] is None
    for _ in range(200):  # 2000 s of snapshots
        clock.now += 10
        stats.sample()
    assert len(stats.snapshots) == 62
    summary = stats.summary(minutes=60)  # more than the buffer: capped at ten minutes
    assert summary["minutes_asked"] == 10
    assert summary["window"]["seconds"] == pytest.approx(600, abs=10)
    assert summary["since_start"]["predict"]["requests"] == 1  # the app's start is kept apart


def test_sampling_on_request_without_a_timer() -> None:
    clock, metrics = Clock(), Metrics()
    stats = LiveStats(metrics.registry, clock=clock, wall_clock=clock)
    clock.now += 4
    stats.sample_if_due()
    assert len(stats.snapshots) == 1
    clock.now += 6
    stats.sample_if_due()
    assert len(stats.snapshots) == 2
    # Long after the last snapshot: the window starts at the newest one before it.
    clock.now += 3600
    predict(metrics, 0.01)
    window = stats.summary(1)["window"]
    assert window["predict"]["requests"] == 1
    assert window["seconds"] == pytest.approx(3600)  # longer than asked, and says so
    assert len(stats.snapshots) == 3  # the summary's own snapshot was due


def test_the_timer_samples_and_ends_with_its_owner() -> None:
    async def main() -> tuple[int, weakref.ref]:
        stats = LiveStats(Metrics().registry, interval=0.01)
        stats.start()
        assert stats.running
        # Until three samples are in (about 0.03 s; up to 5 s on a loaded machine): how many
        # ticks fit in a fixed sleep depends on the machine's load, not on the timer.
        for _ in range(500):
            if len(stats.snapshots) >= 3:
                break
            await asyncio.sleep(0.01)
        count = len(stats.snapshots)
        ref = weakref.ref(stats)
        del stats
        gc.collect()
        await asyncio.sleep(0.05)  # the pending tick finds its owner gone and stops
        return count, ref

    count, ref = asyncio.run(main())
    assert count >= 3
    assert ref() is None


def test_stop_cancels_the_timer() -> None:
    async def main() -> int:
        stats = LiveStats(Metrics().registry, interval=0.01)
        stats.start()
        stats.stop()
        await asyncio.sleep(0.05)
        return len(stats.snapshots)

    assert asyncio.run(main()) == 1
