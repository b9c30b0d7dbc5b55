"""Figures a test measures, shown in pytest's terminal summary (tests/conftest.py).

pytest shows a passing test's output only with ``-s`` or ``-rP``; the production path's figures
(model quality, serving, quickstart times) belong in every CI log, so tests hand them here.
"""

from __future__ import annotations

FIGURES: list[str] = []


def report(name: str, line: str) -> None:
    """Keep ``name: line`` for the summary (and print it, for ``-s``)."""
    FIGURES.append(f"{name}: {line}")
    print(f"\n{name}: {line}")
