"""``scripts/`` are run from a checkout or an installed package alike: they never import the
test suite (what they share with it lives in :mod:`antispam.testing`)."""

from __future__ import annotations

import ast
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def imported_modules(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    # Code run by a subprocess is kept in string constants (scripts/get_overhead.py's server).
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "import" in node.value:
            try:
                found |= imported_modules(node.value)
            except SyntaxError:
                continue
    return found


def test_no_script_imports_the_tests() -> None:
    scripts = sorted(SCRIPTS.glob("*.py"))
    assert scripts
    offenders = {path.name: sorted(m for m in imported_modules(path.read_text(encoding="utf-8"))
                                   if m == "tests" or m.startswith("tests."))
                 for path in scripts}
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_the_check_sees_imports_in_code_and_in_subprocess_strings() -> None:
    assert "tests.helpers.fakes" in imported_modules("from tests.helpers.fakes import FakeBackend")
    assert "tests.helpers" in imported_modules('CODE = """\nfrom tests.helpers import tinymodel\n"""')
