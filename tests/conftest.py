"""Shared fixtures (tiny corpora in the public layout, built in a temp dir), the kind markers,
the ``timing`` selection and the skip guard.

Every test is marked with the kind of the folder it lives in (``unit``, ``service``, ``e2e``,
``deploy``), so ``pytest -m unit`` or ``-m "not e2e and not deploy"`` select by kind; a test
module outside those folders is a collection error.

Tests marked ``timing`` assert wall-clock limits (tests/helpers/timing.py). They run only when
``-m`` names them (``pytest -m timing``) or when one is asked for by node id, so the default run
does not fail because the machine is busy; ``.ci/run`` runs them as a second step.

With ``ANTISPAM_STRICT_SKIPS=1`` (``.ci/run`` sets it) a skipped test that
``tests/allowed_skips.txt`` does not list fails the run: a tool that failed to install, or a
fixture that silently lost its data, cannot turn a test into a skip nobody reads.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

from tests.helpers.corpus import NUMBERS, TINY_PASS, TINY_SPAM, write_corpus

TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "service", "e2e", "deploy")
ALLOWED_SKIPS = TESTS / "allowed_skips.txt"
STRICT_SKIPS_ENV = "ANTISPAM_STRICT_SKIPS"


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
    named = any("::" in arg for arg in config.args)
    if "timing" not in (config.getoption("markexpr") or "") and not named:
        timing = [item for item in items if item.get_closest_marker("timing")]
        if timing:
            config.hook.pytest_deselected(items=timing)
            items[:] = [item for item in items if not item.get_closest_marker("timing")]


def allowed_skips(path: Path = ALLOWED_SKIPS) -> dict[str, str]:
    """Node-id pattern → reason, from ``tests/allowed_skips.txt``; an entry without a reason is
    an error (the file is the documentation)."""
    allowed = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, _, reason = line.partition(" ")
        if not reason.strip():
            raise pytest.UsageError(f"{path}:{number}: {pattern!r} has no reason")
        allowed[pattern] = reason.strip()
    return allowed


def unexpected_skips(skipped: list[tuple[str, str]], allowed: dict[str, str]) -> list[tuple[str, str]]:
    """The skips no pattern allows (a module skipped whole matches ``module::*``)."""
    return [(nodeid, why) for nodeid, why in skipped
            if not any(fnmatch.fnmatchcase(nodeid, p) or fnmatch.fnmatchcase(nodeid + "::", p) for p in allowed)]


_SKIPPED: list[tuple[str, str]] = []  # (node id, reason) of every skip of this session
_UNEXPECTED: list[tuple[str, str]] = []


def _record_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        why = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        _SKIPPED.append((report.nodeid, why))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _record_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get(STRICT_SKIPS_ENV) != "1":
        return
    _UNEXPECTED[:] = unexpected_skips(_SKIPPED, allowed_skips())
    if _UNEXPECTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.helpers.report import FIGURES

    if FIGURES:
        terminalreporter.section("figures measured by the tests (tests/helpers/report.py)")
        for line in FIGURES:
            terminalreporter.line(line)
    if _UNEXPECTED:
        terminalreporter.section(f"skips not allowed by tests/allowed_skips.txt ({STRICT_SKIPS_ENV}=1)", red=True)
        for nodeid, why in _UNEXPECTED:
            terminalreporter.line(f"{nodeid}: {why}")


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
from tests.helpers.stores import feedback_db, make_limiter, make_tracker, open_feedback  # noqa: E402,F401
