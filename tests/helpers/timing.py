"""Wall-clock limits for the tests marked ``timing`` (and only those).

Such a test asserts how long something took: a deadline cut a stalled call short, a refusal came
at once, a probe stayed fast under load. On a loaded machine those limits flake, so they are kept
out of the default run (tests/conftest.py deselects ``timing`` unless ``-m`` names it) and
``.ci/run`` runs them on their own with ``ANTISPAM_TIMING_SLACK`` (a factor on every upper
limit, default 1). Lower limits (the deadline was waited for) are not scaled.
"""

from __future__ import annotations

import os

SLACK_ENV = "ANTISPAM_TIMING_SLACK"


def slack() -> float:
    value = float(os.environ.get(SLACK_ENV, "1"))
    if not value >= 1.0:
        raise ValueError(f"{SLACK_ENV} must be a factor of at least 1, got {value}")
    return value


def within(seconds: float) -> float:
    """An upper wall-clock limit, times the slack factor."""
    return seconds * slack()
