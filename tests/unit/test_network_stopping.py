"""The stopping policy alone: early stopping, the learning-rate plateau, the time budget."""

from __future__ import annotations

import pytest

from antispam.network.stopping import StoppingPolicy


def test_the_first_epoch_is_always_the_best_so_far() -> None:
    verdict = StoppingPolicy(patience=1).after_epoch(1, (0.0, -9.0), 0.0)
    assert verdict.improved and not verdict.shrink_learning_rate and verdict.stop is None


def test_it_stops_after_patience_epochs_without_a_better_key() -> None:
    policy = StoppingPolicy(patience=2)
    assert policy.after_epoch(1, (0.8, -0.5), 1.0).improved
    assert policy.after_epoch(2, (0.9, -0.6), 2.0).improved  # F1 first: a higher loss is fine
    second = policy.after_epoch(3, (0.9, -0.7), 3.0)  # equal F1, worse loss: not better
    assert not second.improved and second.stop is None
    third = policy.after_epoch(4, (0.85, -0.4), 4.0)
    assert third.stop == "no better validation (selection) F1 for 2 epochs"
    assert policy.best_epoch == 2 and policy.best == (0.9, -0.6)


def test_a_better_epoch_resets_the_count() -> None:
    policy = StoppingPolicy(patience=2)
    for epoch, key in enumerate([(0.5, 0.0), (0.4, 0.0), (0.6, 0.0), (0.5, 0.0)], start=1):
        assert policy.after_epoch(epoch, key, 0.0).stop is None
    assert policy.best_epoch == 3 and policy.stale == 1


def test_the_learning_rate_shrinks_only_after_an_epoch_without_improvement() -> None:
    policy = StoppingPolicy(patience=5, plateau_factor=0.5)
    shrinks = [policy.after_epoch(e, key, 0.0).shrink_learning_rate
               for e, key in enumerate([(0.5,), (0.5,), (0.7,), (0.6,)], start=1)]
    assert shrinks == [False, True, False, True]
    off = StoppingPolicy(patience=5)  # factor 1: off
    assert not off.after_epoch(1, (0.5,), 0.0).shrink_learning_rate
    assert not off.after_epoch(2, (0.4,), 0.0).shrink_learning_rate


def test_the_time_budget_stops_after_the_epoch_that_crosses_it() -> None:
    policy = StoppingPolicy(patience=3, max_seconds=10)
    assert policy.after_epoch(1, (0.5,), 9.9).stop is None
    assert policy.after_epoch(2, (0.6,), 10.1).stop == "time budget of 10 s reached"
    # Patience is judged first: both at once report patience.
    late = StoppingPolicy(patience=1, max_seconds=1)
    late.after_epoch(1, (0.5,), 0.0)
    assert late.after_epoch(2, (0.4,), 5.0).stop == "no better validation (selection) F1 for 1 epochs"


def test_patience_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        StoppingPolicy(patience=0)
