"""antispam.calibration: the monotone maps, their record, ECE and the choice between them."""

from __future__ import annotations

import numpy as np
import pytest

from antispam.calibration import (
    Calibration,
    choose,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    sigmoid,
)


def overconfident(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose logit is 3× the true log-odds: an over-confident network, like the CNN."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0.0, 2.0, n)
    is_spam = rng.random(n) < sigmoid(true_logit)
    return sigmoid(3.0 * true_logit), is_spam


def test_ece_is_zero_for_perfect_bins_and_counts_the_gap() -> None:
    p = np.array([0.05] * 20 + [0.95] * 20)
    y = np.array([True] * 1 + [False] * 19 + [True] * 19 + [False] * 1)
    assert expected_calibration_error(p, y) == pytest.approx(0.0)
    # Everything at 0.9 but only half is spam: off by 0.4 everywhere.
    assert expected_calibration_error(np.full(10, 0.9), np.arange(10) < 5) == pytest.approx(0.4)
    assert expected_calibration_error([], []) is None


def test_platt_undoes_an_overconfident_scale() -> None:
    scores, is_spam = overconfident()
    fitted = fit_platt(scores, is_spam)
    a, _b = fitted.params
    assert a == pytest.approx(1 / 3, rel=0.15)  # logit(p') = logit(s) / 3 recovers the truth
    before = expected_calibration_error(scores, is_spam)
    after = expected_calibration_error(fitted.apply(scores), is_spam)
    assert before is not None and after is not None and after < before / 2


def test_isotonic_is_monotone_and_calibrated_in_sample() -> None:
    scores, is_spam = overconfident(seed=1)
    fitted = fit_isotonic(scores, is_spam)
    grid = np.linspace(0, 1, 1001)
    assert np.all(np.diff(fitted.apply(grid)) >= 0)
    assert expected_calibration_error(fitted.apply(scores), is_spam) < 0.02


def test_choose_records_both_methods_and_keeps_the_lower_cross_validated_log_loss() -> None:
    scores, is_spam = overconfident(seed=2)
    chosen = choose(scores, is_spam)
    figures = chosen.report["cross_validated"]
    assert set(figures) == {"platt", "isotonic"}
    assert chosen.method == min(figures, key=lambda m: figures[m]["log_loss"])
    assert chosen.report["uncalibrated_ece"] > figures[chosen.method]["ece"]


def test_choose_refuses_one_class_and_falls_back_to_platt_on_a_toy_split() -> None:
    with pytest.raises(ValueError, match="both classes"):
        choose(np.linspace(0, 1, 50), np.ones(50, bool))
    toy = choose(np.array([0.1, 0.2, 0.7, 0.9, 0.95, 0.3]), np.array([False, False, True, True, True, False]))
    assert toy.method == "platt" and toy.report["cross_validated"] is None


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_record_round_trip_gives_the_same_map(method: str) -> None:
    scores, is_spam = overconfident(seed=3)
    fitted = fit_platt(scores, is_spam) if method == "platt" else fit_isotonic(scores, is_spam)
    again = Calibration.from_record(fitted.to_record())
    probe = np.linspace(0, 1, 101)
    assert np.array_equal(again.apply(probe), fitted.apply(probe))


@pytest.mark.parametrize("record, problem", [
    ({"method": "magic"}, "method"),
    ({"method": "platt", "a": -1.0, "b": 0.0}, "increasing"),
    ({"method": "platt", "a": "1", "b": 0.0}, "finite numbers"),
    ({"method": "isotonic", "knots_x": [0.1, 0.05], "knots_y": [0.1, 0.2]}, "increase"),
    ({"method": "isotonic", "knots_x": [0.1, 0.2], "knots_y": [0.3]}, "as many"),
    ([], "object"),
])
def test_bad_records_are_refused(record: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Calibration.from_record(record)
