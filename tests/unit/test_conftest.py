"""The suite's own guards (tests/conftest.py): the allowed-skips list and the strict-skip check."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ALLOWED_SKIPS, allowed_skips, unexpected_skips

REPO = Path(__file__).resolve().parents[2]


def test_every_allowed_skip_names_a_test_file_and_gives_a_reason() -> None:
    allowed = allowed_skips()
    assert allowed and len(allowed) <= 5  # short: each entry is a hole in CI
    for pattern, reason in allowed.items():
        assert (REPO / pattern.split("::")[0]).is_file(), pattern
        assert len(reason) > 20, pattern


def test_only_skips_outside_the_list_are_unexpected() -> None:
    allowed = {"tests/deploy/test_docker_real.py::*": "no engine", "tests/unit/test_a.py::test_b": "why"}
    skipped = [("tests/deploy/test_docker_real.py::test_x", "no engine"),
               ("tests/unit/test_a.py::test_b", "why"),
               ("tests/unit/test_a.py::test_c", "a tool is missing"),
               ("tests/deploy/test_docker_real.py", "module skipped whole"),
               ("tests/e2e/test_console_browser.py", "no chromium")]
    assert unexpected_skips(skipped, allowed) == [("tests/unit/test_a.py::test_c", "a tool is missing"),
                                                  ("tests/e2e/test_console_browser.py", "no chromium")]


def test_an_entry_without_a_reason_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "allowed.txt"
    path.write_text("# comment\ntests/unit/test_a.py::*\n", encoding="utf-8")
    with pytest.raises(pytest.UsageError, match="no reason"):
        allowed_skips(path)
    assert ALLOWED_SKIPS.name == "allowed_skips.txt"


def test_ci_runs_exactly_the_readme_test_commands() -> None:
    """README says `.ci/run` does exactly its test commands: each command line of the README's
    test block (comments stripped) is a line of .ci/run."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("Run the tests:", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("  #")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert commands and all(command in ci for command in commands), commands
    assert "export ANTISPAM_STRICT_SKIPS=1" in ci
