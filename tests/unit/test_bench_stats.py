"""Percentile math of the bench: numpy's linear interpolation, exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antispam.bench.stats import median, percentile, summarize


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == 25.0  # halfway between ranks 1 and 2
    assert percentile(values, 95) == pytest.approx(38.5)


def test_single_value_and_empty() -> None:
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    empty = summarize([])
    assert empty["count"] == 0 and math.isnan(empty["p99"]) and math.isnan(empty["max"])


def test_out_of_range_percentile_is_rejected() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=300),
       st.floats(0, 100))
def test_matches_numpy(values: list[float], q: float) -> None:
    ordered = sorted(values)
    assert percentile(ordered, q) == pytest.approx(float(np.percentile(ordered, q)), rel=1e-9, abs=1e-9)


def test_summarize_orders_its_input() -> None:
    summary = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert summary["p50"] == 3.0 and summary["max"] == 5.0 and summary["mean"] == 3.0
    assert summary["count"] == 5
    assert summary["p50"] <= summary["p95"] <= summary["p99"] <= summary["max"]
    assert median([3.0, 1.0, 2.0]) == 2.0
