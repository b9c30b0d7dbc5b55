"""antispam.operating_points: thresholds for a target precision / recall, and how policies use them."""

from __future__ import annotations

import numpy as np
import pytest

from antispam.operating_points import (
    LEGACY_BLOCK,
    LEGACY_REVIEW,
    OperatingPoints,
    block_threshold,
    check_thresholds,
    choose_points,
    fit_decision,
    resolve_thresholds,
    review_threshold,
)


def scored(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    is_spam = rng.random(n) < 0.5
    p = np.clip(np.where(is_spam, rng.beta(5, 1.5, n), rng.beta(1.2, 6, n)), 0, 1)
    return p, is_spam


def test_block_threshold_keeps_the_target_precision_on_every_tail() -> None:
    p, y = scored()
    t = block_threshold(p, y, 0.99)
    order = np.argsort(-p)
    for k in range(20, int(np.sum(p >= t)) + 1):
        top = order[:k]
        assert y[top].mean() >= 0.99
    # One step lower would break it somewhere (the threshold is the lowest that holds).
    below = np.max(p[p < t])
    flagged = p >= below
    assert y[flagged].mean() < 0.99 or any(y[order[:k]].mean() < 0.99 for k in range(20, int(flagged.sum()) + 1))


def test_block_threshold_blocks_nothing_when_the_target_cannot_be_met() -> None:
    p = np.linspace(0, 1, 100)
    y = np.zeros(100, bool)  # no spam at all: no precision is reachable
    t = block_threshold(p, y, 0.99)
    assert int(np.sum(p >= t)) <= 1  # at most the one message at exactly 1.0 (thresholds stay in [0, 1])


def test_review_threshold_reaches_the_target_recall() -> None:
    p, y = scored(seed=1)
    t = review_threshold(p, y, 0.95)
    assert np.mean(p[y] >= t) >= 0.95
    assert np.mean(p[y] >= np.nextafter(t, 2)) < 0.95


def test_points_record_what_they_give_and_round_trip() -> None:
    p, y = scored(seed=2)
    points = choose_points(p, y)
    assert points.review.threshold <= points.block.threshold
    assert points.block.precision >= 0.99 and points.review.recall >= 0.95
    assert points.block.pass_share == pytest.approx(np.mean(p[~y] >= points.block.threshold))
    assert OperatingPoints.from_record(points.to_record()) == points


def test_fit_decision_chooses_points_on_calibrated_scores() -> None:
    p, y = scored(seed=3)
    raw = p ** 4  # a monotone distortion the calibration has to undo
    calibration, points = fit_decision(raw, y)
    calibrated = calibration.apply(raw)
    assert np.mean(calibrated[y] >= points.review.threshold) >= 0.95
    assert points.block.threshold <= 1.0


def test_policy_thresholds_come_from_the_version_unless_set() -> None:
    p, y = scored(seed=4)
    points = choose_points(p, y)
    assert resolve_thresholds(None, None, points) == (points.review.threshold, points.block.threshold)
    assert resolve_thresholds(None, None, None) == (LEGACY_REVIEW, LEGACY_BLOCK)
    assert resolve_thresholds(0.3, 0.8, points) == (0.3, 0.8)
    # A set block below the version's review point pulls the unset review down with it.
    review, block = resolve_thresholds(None, 0.01, points)
    assert (review, block) == (min(points.review.threshold, 0.01), 0.01)


@pytest.mark.parametrize("review, block, ok", [
    (None, None, True), (0.5, 0.9, True), (0.9, 0.5, False), (-0.1, None, False), (None, 1.5, False),
    (True, None, False), (float("nan"), None, False)])
def test_check_thresholds(review: object, block: object, ok: bool) -> None:
    assert (check_thresholds(review, block) is None) is ok  # type: ignore[arg-type]
