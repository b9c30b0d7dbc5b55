"""Latency percentiles, computed the same way everywhere in the bench.

Why our own function: the report must say exactly which percentile definition it used, and the
load generator must not need numpy (it runs in a lean process). We use linear interpolation
between closest ranks, numpy's default (``method="linear"``), so results can be checked against
numpy in tests.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

PERCENTILES = (50.0, 95.0, 99.0)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values; NaN when there are none."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    n = len(sorted_values)
    if n == 0:
        return math.nan
    position = (n - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, n - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def summarize(values: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean/count of latencies (any unit; the caller names it)."""
    ordered = sorted(values)
    out = {f"p{int(q)}": percentile(ordered, q) for q in PERCENTILES}
    out["max"] = ordered[-1] if ordered else math.nan
    out["mean"] = sum(ordered) / len(ordered) if ordered else math.nan
    out["count"] = float(len(ordered))
    return out


def median(values: Iterable[float]) -> float:
    return percentile(sorted(values), 50.0)
