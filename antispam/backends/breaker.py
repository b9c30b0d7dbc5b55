"""A circuit breaker for the gRPC path, so a dead TF Serving port costs no request its latency.

closed: every request tries gRPC first. After ``failures`` consecutive transport failures it
opens: requests go straight to REST. After ``cooldown`` seconds it is half-open: the next caller
(a request or the version poller) is let through as a single trial; if the trial answers the
breaker closes, if it fails the breaker opens for another cool-down. Only transport failures
count (no connection, UNAVAILABLE, deadline); an error *answer* proves the transport works.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, failures: int = 3, cooldown: float = 5.0, *,
                 clock: Callable[[], float] = time.monotonic, label: str = "gRPC") -> None:
        if failures < 1 or cooldown < 0:
            raise ValueError("a breaker needs failures >= 1 and cooldown >= 0")
        self.threshold = failures
        self.cooldown = cooldown
        self.label = label
        self._clock = clock
        self._state = CLOSED
        self._opened_at = 0.0
        self._trial_in_flight = False
        self.consecutive_failures = 0
        self.opens = 0  # how many times the breaker has opened (a counter for metrics)

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open`` (open with its cool-down over)."""
        if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown:
            return HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May the caller try the protected path now? A True in half-open state is the trial."""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN:
            return False
        if self._state == OPEN:  # cool-down just ended
            self._state = HALF_OPEN
            self._trial_in_flight = False
        if self._trial_in_flight:
            return False
        self._trial_in_flight = True
        return True

    def success(self) -> None:
        if self._state != CLOSED:
            log.info("%s answers again: circuit closed", self.label)
        self._state = CLOSED
        self._trial_in_flight = False
        self.consecutive_failures = 0

    def failure(self) -> None:
        self.consecutive_failures += 1
        self._trial_in_flight = False
        if self._state == HALF_OPEN or (self._state == CLOSED and self.consecutive_failures >= self.threshold):
            log.log(logging.WARNING if self._state == CLOSED else logging.DEBUG,
                    "%s failed %d times in a row: circuit open for %.1f s",
                    self.label, self.consecutive_failures, self.cooldown)
            self._state = OPEN
            self._opened_at = self._clock()
            self.opens += 1

    def release(self) -> None:
        """The caller gave up without a verdict (cancelled): let another caller be the trial."""
        self._trial_in_flight = False

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "opens": self.opens,
            "failures_to_open": self.threshold,
            "cooldown_seconds": self.cooldown,
        }
