"""Shared fixtures (tiny corpora in the public layout, built in a temp dir) and the kind markers.

Every test is marked with the kind of the folder it lives in (``unit``, ``service``, ``e2e``,
``deploy``), so ``pytest -m unit`` or ``-m "not e2e and not deploy"`` select by kind; a test
module outside those folders is a collection error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.corpus import NUMBERS, TINY_PASS, TINY_SPAM, write_corpus

TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "service", "e2e", "deploy")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misplaced = set()
    for item in items:
        try:
            parts = item.path.resolve().relative_to(TESTS).parts
        except ValueError:
            continue  # not one of ours
        if len(parts) > 1 and parts[0] in KINDS:
            item.add_marker(parts[0])
        else:
            misplaced.add(str(item.path))
    if misplaced:
        raise pytest.UsageError(f"test modules outside tests/{{{','.join(KINDS)}}}/: "
                                f"{', '.join(sorted(misplaced))} (put each in the folder of its kind)")


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A corpus folder in the public layout with a few dozen distinct messages per class."""
    # Variants differ by number words, not digits: digits are masked and would collapse them.
    spam = [f"{line} 编号 {n}" for n in NUMBERS for line in TINY_SPAM]
    passed = [f"{line} 第 {n} 次" for n in NUMBERS for line in TINY_PASS]
    return write_corpus(tmp_path / "corpus", spam, passed)


@pytest.fixture
def real_corpus() -> Path:
    """The shared corpus (ANTISPAM_DATA); tests that need it skip with a reason without it."""
    path = os.environ.get("ANTISPAM_DATA")
    if not path or not Path(path).exists():
        pytest.skip("ANTISPAM_DATA is not set to the msglog corpus")
    return Path(path)

# Issue 23: the feedback-store and rate-limiter fixtures (one test body, every store and limiter).
from tests.helpers.stores import feedback_db, make_limiter, open_feedback  # noqa: E402,F401
