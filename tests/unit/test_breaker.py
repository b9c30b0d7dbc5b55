"""The gRPC circuit breaker, on a fake clock."""

from __future__ import annotations

import pytest

from antispam.backends.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failures=3, cooldown=5, clock=Clock())
    breaker.failure()
    breaker.failure()
    breaker.success()  # resets the run
    breaker.failure()
    breaker.failure()
    assert breaker.state == CLOSED and breaker.allow()
    breaker.failure()
    assert breaker.state == OPEN and breaker.opens == 1
    assert not breaker.allow()


def test_half_open_lets_one_trial_through_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=5, clock=clock)
    breaker.failure()
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.state == HALF_OPEN
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # only one at a time
    breaker.success()
    assert breaker.state == CLOSED and breaker.allow() and breaker.allow()


def test_failed_trial_reopens_for_another_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=2, cooldown=5, clock=clock)
    breaker.failure()
    breaker.failure()
    clock.now += 5
    assert breaker.allow()
    breaker.failure()  # one failure is enough in half-open state
    assert breaker.state == OPEN and breaker.opens == 2
    clock.now += 4
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()


def test_released_trial_lets_the_next_caller_try() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=1, clock=clock)
    breaker.failure()
    clock.now += 1
    assert breaker.allow()
    breaker.release()  # e.g. the request was cancelled
    assert breaker.allow()
    assert breaker.status()["state"] == HALF_OPEN


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures=0)
