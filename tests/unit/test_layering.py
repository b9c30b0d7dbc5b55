"""Layering rules of the package, checked on the source (the AST; nothing is imported).

The package is ``antispam/`` plus ``network/`` and ``word2vec/``, installed as
``antispam.network`` and ``antispam.word2vec``. Two kinds of rule:

* :data:`RULES`: the modules of a layer never import the named packages or modules, not at
  module level and not inside a function either; an exception is allowed only where the table
  says so. The same names must also not come in *through* another module of the package at
  import time (the module-level imports, followed transitively).
* :data:`IMPORTED_ONLY_BY`: a module (or package) is imported by no module of the package but
  the ones listed (tests and scripts may import anything).

And one rule for the whole package: its import graph has no cycle (:func:`import_graph`, issue 22).

``python -m tests.unit.test_layering`` prints both tables as Markdown.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = {"antispam": REPO / "antispam", "antispam.network": REPO / "network",
           "antispam.word2vec": REPO / "word2vec"}

ML = ("tensorflow", "tensorlayer", "tf_keras", "keras", "tensorflow_serving")
TRAINERS = ("antispam.network", "antispam.word2vec")
CORE = ("antispam.text", "antispam.contacts", "antispam.signatures", "antispam.features", "antispam.labels",
        "antispam.config", "antispam.everyday", "antispam.atomic", "antispam.data", "antispam.privacy",
        "antispam.calibration",
        "antispam.operating_points")
REMOTE_BACKENDS = ("antispam.backends.base", "antispam.backends.batching", "antispam.backends.breaker",
                   "antispam.backends.grpc", "antispam.backends.rest", "antispam.backends.http_pool",
                   "antispam.backends.remote", "antispam.backends.remote_versions", "antispam.backends.fallback",
                   "antispam.backends.factory")
SERVICE = ("antispam.runtime", "antispam.app", "antispam.http", "antispam.scoring", "antispam.metrics",
           "antispam.errors", "antispam.cache", "antispam.console", "antispam.callbacks")
# Domain modules of issue 12 (lists, policies, explanations, request ids) and the stores and workflow of
# issue 23 (decision log, review queue, shared limiter): below the app like scoring. (The appeal callbacks,
# antispam.callbacks, send with Tornado's HTTP client: they are the app's, in SERVICE.)
DOMAIN_12 = ("antispam.lists", "antispam.allow", "antispam.policies", "antispam.explain", "antispam.request_ids",
             "antispam.aio", "antispam.campaigns", "antispam.senders", "antispam.blocklist",
             "antispam.decisions", "antispam.decision_store", "antispam.review", "antispam.review_pg",
             "antispam.review_stores", "antispam.ratelimit", "antispam.feedback_stores",
             "antispam.feedback_pg")
CLI = ("antispam.cli", "antispam.commands", "antispam.network.cli", "antispam.word2vec.cli")


@dataclass(frozen=True)
class Rule:
    name: str
    modules: tuple[str, ...]
    must_not_import: tuple[str, ...]
    # (module, imported name) -> why; allowed only inside a function, never at module level.
    lazy_exceptions: dict[tuple[str, str], str] = field(default_factory=dict)


RULES = [
    Rule("core", CORE, ("tornado", *ML)),
    Rule("scoring below the app", ("antispam.scoring", *DOMAIN_12), ("tornado", "antispam.app", "antispam.http", *CLI)),
    Rule("remote backends and the app", REMOTE_BACKENDS + SERVICE + DOMAIN_12,
         (*ML, *TRAINERS, "antispam.backends.local"),
         {("antispam.backends.factory", "antispam.backends.local"):
          "the in-process backend, imported inside a function when it is chosen"}),
]

IMPORTED_ONLY_BY: list[tuple[str, tuple[str, ...], str]] = [
    ("antispam.testing", ("antispam.testing", "antispam.bench", "antispam.commands.bench"),
     "test equipment: the tests and `antispam bench` only, never the service"),
    ("antispam.app", ("antispam.runtime",),
     "the HTTP app: the worker of `antispam serve` only (`antispam predict` scores through antispam.scoring)"),
    ("antispam.runtime", ("antispam.commands.serve", "antispam.runtime"),
     "the server process (sockets, supervisor, workers): `antispam serve` parses its flags and calls it"),
    ("antispam.http", ("antispam.app", "antispam.console", "antispam.http", "antispam.runtime"),
     "the routes and what they share (services, base handlers, the HTTP server, log lines): the app, "
     "the console's handlers (which extend its base handler instead of importing the app) and the "
     "worker that runs the server"),
    ("antispam.console", ("antispam.app", "antispam.console"),
     "the moderator's console: its routes are registered by make_app only"),
    ("antispam.cli", ("antispam.__main__",), "the `antispam` command"),
    ("antispam.commands", (),
     "one module per command, found by name by antispam.cli; commands never import each other"),
    ("antispam.network.cli", (), "`antispam train cnn/rnn/mlp`, found by name by antispam.commands.train"),
    ("antispam.word2vec.cli", (), "`antispam train word2vec`, found by name by antispam.commands.train"),
]


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    target: str  # module, or module.name for ``from module import name``
    line: int
    module_level: bool  # runs when the module is imported (not in a function, not TYPE_CHECKING)


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


@lru_cache(maxsize=None)
def modules() -> dict[str, Path]:
    found = {}
    for package, root in SOURCES.items():
        for path in sorted(root.rglob("*.py")):
            found[_module_name(package, root, path)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@lru_cache(maxsize=None)
def imports_of(name: str) -> tuple[Import, ...]:
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(alias.name, child.lineno, module_level) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*parts, base] if base else parts)
                found.extend(Import(f"{base}.{alias.name}", child.lineno, module_level) for alias in child.names)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                visit(child, False)
            else:
                visit(child, module_level)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), True)
    return tuple(found)


def matches(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def package_module(target: str) -> str | None:
    """The module of the package that importing ``target`` runs (longest known prefix)."""
    known = modules()
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


def loaded_at_import(name: str) -> dict[str, list[str]]:
    """Every name imported, transitively, when ``name`` is imported -> the chain that brings it."""
    chains: dict[str, list[str]] = {}
    seen = {name}
    todo = [[name]]
    while todo:
        chain = todo.pop()
        for imp in imports_of(chain[-1]):
            if not imp.module_level:
                continue
            chains.setdefault(imp.target, chain)
            inner = package_module(imp.target)
            # Importing a.b.c also runs a and a.b (their __init__ files).
            for parent in _parents(inner):
                if parent not in seen:
                    seen.add(parent)
                    todo.append([*chain, parent])
    return chains


def _parents(name: str | None) -> list[str]:
    if name is None:
        return []
    parts = name.split(".")
    return [m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in modules()]


def members(prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules() if any(matches(m, p) for p in prefixes))


def violations(rule: Rule) -> list[str]:
    problems = []
    for name in members(rule.modules):
        for imp in imports_of(name):
            for forbidden in rule.must_not_import:
                if not matches(imp.target, forbidden):
                    continue
                if (name, forbidden) in rule.lazy_exceptions and not imp.module_level:
                    continue
                where = "at module level" if imp.module_level else "inside a function"
                problems.append(f"{name} (line {imp.line}) imports {imp.target} {where}")
        for target, chain in loaded_at_import(name).items():
            if len(chain) < 2:
                continue  # direct imports are judged above
            for forbidden in rule.must_not_import:
                if matches(target, forbidden):
                    problems.append(f"importing {name} loads {target} through {' -> '.join(chain)}")
    return problems


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_layer_does_not_import(rule: Rule) -> None:
    for prefix in rule.modules:
        assert members((prefix,)), f"rule {rule.name!r} names {prefix}, which is not a module of the package"
    assert violations(rule) == []


@pytest.mark.parametrize("module,importers,why", [pytest.param(*row, id=row[0]) for row in IMPORTED_ONLY_BY])
def test_module_is_imported_only_by(module: str, importers: tuple[str, ...], why: str) -> None:
    assert members((module,)), f"{module} is not a module of the package"
    problems = []
    for name in sorted(modules()):
        if any(matches(name, allowed) for allowed in importers):
            continue
        for imp in imports_of(name):
            if matches(imp.target, module) and package_module(imp.target) != name:
                problems.append(f"{name} (line {imp.line}) imports {imp.target}")
    assert problems == [], why


def test_the_checker_sees_what_it_must() -> None:
    """Not vacuous: the local backend imports TensorFlow; the factory imports it lazily."""
    local = imports_of("antispam.backends.local")
    assert any(matches(i.target, "tensorflow") for i in local)
    factory = [i for i in imports_of("antispam.backends.factory") if matches(i.target, "antispam.backends.local")]
    assert factory and not any(i.module_level for i in factory)
    assert "tornado.web" in loaded_at_import("antispam.app")
    # The worker imports the app inside serve(), after the fork.
    assert loaded_at_import("antispam.commands.serve").get("tornado.web") is None


# ---------------------------------------------------------------------------------------------
# No import cycles (issue 22).
#
# Which imports count: every import statement of a module, wherever it stands: at module level,
# inside a function, and under ``if TYPE_CHECKING:``. An import inside a function hides a cycle
# from the interpreter, not from a reader: the two modules still cannot be understood, tested or
# moved one without the other, and the lazy import is usually the trace of a cycle someone ran
# into. A TYPE_CHECKING import names the other module's type; where a module needs only a few
# members of a caller, a Protocol of its own says so without the import (antispam.explain's
# ModelCaller). An edge goes to the module the statement names (the longest prefix of the name
# that is a module of the package; ``from antispam import versions`` is antispam.versions), not
# to the packages above it, whose ``__init__`` files import nothing of the package.


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {module of the package it imports: the line of the first such import}."""
    graph: dict[str, dict[str, int]] = {}
    for name in modules():
        edges = graph.setdefault(name, {})
        for imp in imports_of(name):
            target = package_module(imp.target)
            if target is not None and target != name:
                edges.setdefault(target, imp.line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan's
    algorithm, iterative), as ``[a, b, ..., a]``; sorted, so the answer is stable."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    found = []
    for component in components:
        start = min(component)
        # Shortest way back to the start inside the component (breadth first).
        paths = {start: [start]}
        todo = [start]
        cycle = None
        while todo and cycle is None:
            node = todo.pop(0)
            for child in sorted(graph.get(node, {})):
                if child == start:
                    cycle = [*paths[node], start]
                    break
                if child in component and child not in paths:
                    paths[child] = [*paths[node], child]
                    todo.append(child)
        assert cycle is not None
        found.append(cycle)
    return sorted(found)


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    """``a (line 3) -> b (line 40) -> a``: where each module imports the next."""
    hops = [f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join([*hops, cycle[-1]])


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = [describe(c, graph) for c in cycles(graph)]
    assert not found, "import cycles (module (line of its import) -> the module it imports):\n" + "\n".join(found)


def test_the_cycle_check_sees_what_it_must() -> None:
    """Not vacuous: the graph holds a function-level and a TYPE_CHECKING import, and the search
    finds cycles of two and of three modules."""
    graph = import_graph()
    assert "antispam.explain" in graph["antispam.scoring"]  # only inside Scorer.score
    assert "antispam.versions" in graph["antispam.backends.base"]  # only under TYPE_CHECKING
    toy = {"a": {"b": 1}, "b": {"a": 2, "c": 3}, "c": {"d": 4}, "d": {"e": 5}, "e": {"c": 6}, "f": {"a": 7}}
    assert cycles(toy) == [["a", "b", "a"], ["c", "d", "e", "c"]]
    assert describe(["a", "b", "a"], toy) == "a (line 1) -> b (line 2) -> a"
    assert cycles({"a": {"b": 1}, "b": {}}) == []


def markdown() -> str:
    lines = ["| Layer | Modules | Never import (anywhere, nor through another module at import) | Exception |",
             "|---|---|---|---|"]
    for rule in RULES:
        mods = ", ".join(f"`{m}`" for m in rule.modules) or "every module but the CLI modules"
        never = ", ".join(f"`{m}`" for m in rule.must_not_import)
        allowed = "; ".join(f"`{m}` may import `{n}` inside a function ({why})"
                            for (m, n), why in rule.lazy_exceptions.items()) or "-"
        lines.append(f"| {rule.name} | {mods} | {never} | {allowed} |")
    lines += ["", "| Module | Imported only by (besides tests and scripts) | Why |", "|---|---|---|"]
    for module, importers, why in IMPORTED_ONLY_BY:
        by = ", ".join(f"`{m}`" for m in importers) or "no module (found by name)"
        lines.append(f"| `{module}` | {by} | {why} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(markdown())
