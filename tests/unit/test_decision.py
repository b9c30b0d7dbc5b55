"""antispam.network.decision: the gate on what users feel, and the best-ever record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from antispam.network.decision import GATED, better, gate, read_best, write_best

GOOD = {"block_precision": 0.995, "block_recall": 0.90, "review_recall": 0.96, "everyday_flagged": 0.005,
        "joined_blocked": 0.004}


def report(regression: list[bool] | None = None, **changes: float) -> dict[str, Any]:
    return {"figures": {**GOOD, **changes}, "regression": regression or []}


def best_of(figures: dict[str, float], version: int = 1) -> dict[str, dict[str, Any]]:
    return {name: {"value": value, "version": version} for name, value in figures.items()}


def test_the_same_figures_pass() -> None:
    result = gate(report(), report(), best_of(GOOD), 3)
    assert result.publish, result.reason
    assert all(row["ok"] for row in result.table.values())


@pytest.mark.parametrize("name", list(GATED))
def test_each_figure_beyond_its_tolerance_refuses(name: str) -> None:
    direction, tolerance = GATED[name]
    worse = GOOD[name] - 2 * tolerance if direction == "higher" else GOOD[name] + 2 * tolerance
    result = gate(report(**{name: worse}), report(), best_of(GOOD), 3)
    assert not result.publish and name in result.reason
    within = GOOD[name] - tolerance / 2 if direction == "higher" else GOOD[name] + tolerance / 2
    assert gate(report(**{name: within}), report(), best_of(GOOD), 3).publish


def test_below_the_best_ever_block_precision_is_refused_even_if_serving_is_worse() -> None:
    # The serving version slipped (within tolerance of the best); a candidate as low as serving
    # minus one more tolerance would pass against serving alone, but not against the best ever.
    serving = report(block_precision=0.992)
    candidate = report(block_precision=0.989)
    assert gate(candidate, serving, {}, 3).publish  # vs serving alone: 0.989 >= 0.992 - 0.004
    result = gate(candidate, serving, best_of({"block_precision": 0.996}), 3)
    assert not result.publish
    assert result.table["block_precision"]["reference"] == 0.996


def test_a_flipped_trusted_verdict_refuses() -> None:
    serving = report(regression=[True, True, False])
    assert gate(report(regression=[True, True, True]), serving, best_of(GOOD), 3).publish
    result = gate(report(regression=[True, False, True]), serving, best_of(GOOD), 3)
    assert not result.publish and result.flips == 1 and "trusted verdict" in result.reason


def test_first_version_is_published_without_comparison() -> None:
    result = gate(report(block_precision=0.5), None, {}, None)
    assert result.publish and "first version" in result.reason


def test_tolerance_scale_zero_demands_no_loss() -> None:
    tight = {name: 0.0 for name in GATED}
    assert not gate(report(block_recall=0.899), report(), {}, 3, tight).publish
    assert gate(report(), report(), {}, 3, tight).publish


def test_best_record_ratchets_per_figure_and_resets_on_another_gate_set(tmp_path: Path) -> None:
    first = write_best(tmp_path, "set-a", {}, report(), 1)
    assert read_best(tmp_path, "set-a") == first
    second = write_best(tmp_path, "set-a", first, report(block_recall=0.92, everyday_flagged=0.01), 2)
    assert second["block_recall"] == {"value": 0.92, "version": 2}
    assert second["everyday_flagged"] == {"value": 0.005, "version": 1}  # lower is better: kept
    assert read_best(tmp_path, "set-b") == {}


def test_better() -> None:
    assert better("block_precision", 0.9, 0.95) == 0.95
    assert better("everyday_flagged", 0.01, 0.02) == 0.01
    assert better("block_recall", None, 0.5) == 0.5


def test_an_undefined_figure_is_not_counted_as_worse_but_its_defined_partner_is() -> None:
    # A candidate that blocks nothing has no block precision; its block recall of 0 refuses it.
    result = gate(report(block_precision=None, block_recall=0.0), report(), best_of(GOOD), 3)  # type: ignore[arg-type]
    assert not result.publish
    assert result.table["block_precision"]["ok"] and not result.table["block_recall"]["ok"]
