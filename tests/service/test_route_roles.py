"""Issue 21: every route of the app has a role decision, and behaves as that decision says.

The one declared table is :data:`antispam.app.ROUTE_ROLES`; role inheritance is
:data:`antispam.keys.IMPLIES`. These tests walk the route table of a real ``make_app`` (console
routes included) with keys on and send each route, for each method it takes, a request without a
key and one with a key of each single role; the answer must be 401 / 403 / "let through" exactly
as the table says. A route missing from the table stops ``make_app`` (and so every test); a
table entry with no route fails here. The route-role table in docs/operations.md is rendered
from the code table and must be there verbatim (``python -m tests.service.test_route_roles``
prints it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tornado.web

from antispam import app as app_module
from antispam.app import ROUTE_ROLES, make_app
from antispam.http.ops import HealthHandler
from antispam.keys import ROLES, KeyRing, add_key, granted
from tests.helpers.fakes import FakeBackend
from tests.service.test_app import ApiTestCase

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("GET", "HEAD", "POST")


def methods_of(handler: type) -> list[str]:
    return [m for m in METHODS if getattr(handler, m.lower()) is not getattr(tornado.web.RequestHandler, m.lower())]


def _group(match: re.Match[str], readable: bool) -> str:
    inner = match.group(1)
    if "|" in inner:
        options = inner.split("|")
        return "{" + ",".join(options) + "}" if readable else options[0]
    if "[0-9]" in inner:
        return "{n}" if readable else "1"
    return "{name}" if readable else "x"


def sample_path(pattern: str, readable: bool = False) -> str:
    """A concrete path the pattern matches (or, ``readable``, the pattern with its groups named)."""
    path = re.sub(r"\(([^()]*)\)", lambda m: _group(m, readable), pattern).replace("\\.", ".")
    if not readable:
        assert re.fullmatch(pattern, path), f"extend sample_path for the route {pattern}"
    return path


def app_routes(application: tornado.web.Application) -> dict[str, type]:
    """pattern -> handler class, as registered (Tornado appends ``$`` to each pattern)."""
    found = {}
    for rule in application.wildcard_router.rules:
        pattern = rule.matcher.regex.pattern  # type: ignore[attr-defined]
        found[pattern[:-1] if pattern.endswith("$") else pattern] = rule.target
    return found


def role_table_markdown() -> str:
    """docs/operations.md's route-role table, from ROUTE_ROLES, the handlers and IMPLIES."""
    application = make_app(_config(Path("/nonexistent")), FakeBackend())
    handlers = app_routes(application)
    lines = ["| route | methods | role (keys on) | keys with these roles may call it |", "|---|---|---|---|"]
    for pattern, role in ROUTE_ROLES.items():
        methods = ", ".join(methods_of(handlers[pattern]))
        if role is None:
            needed, who = "(none)", "anyone, no key needed"
        else:
            needed = f"`{role}`"
            who = ", ".join(f"`{r}`" for r in ROLES if role in granted({r}))
        lines.append(f"| `{sample_path(pattern, readable=True)}` | {methods} | {needed} | {who} |")
    return "\n".join(lines) + "\n"


def _config(tmp: Path):  # noqa: ANN202 - a ServeConfig
    from antispam.config import ServeConfig

    return ServeConfig(model_base=str(tmp / "models"), model_name="cnn", lists_dir=str(tmp / "lists"))


class RouteRolesTest(ApiTestCase):
    def make_backend(self):
        return FakeBackend()

    def get_app(self):
        keys_file = self.tmp / "keys.tsv"
        self.keys = {role: add_key(keys_file, f"only-{role}", [role], 1e6) for role in ROLES}
        self.ring = KeyRing(keys_file, poll_seconds=0.0)
        return make_app(self.config, self.backend, feedback_store=self.store, keyring=self.ring)

    def status(self, path: str, method: str, key: str | None) -> int:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        body = b"{}" if method == "POST" else None
        if body is not None:
            headers["Content-Type"] = "application/json"
        return self.fetch(path, method=method, body=body, headers=headers, follow_redirects=False).code

    def test_every_route_is_in_the_table_and_answers_as_it_says(self):
        routes = app_routes(self._app)
        self.assertEqual(set(routes), set(ROUTE_ROLES), "ROUTE_ROLES and the app's routes differ")
        checked = 0
        for pattern, handler in routes.items():
            role = ROUTE_ROLES[pattern]
            path = sample_path(pattern)
            for method in methods_of(handler):
                anonymous = self.status(path, method, None)
                if role is None:
                    self.assertNotIn(anonymous, (401, 403), f"{method} {path} should be open")
                else:
                    self.assertEqual(anonymous, 401, f"{method} {path} without a key")
                for key_role, key in self.keys.items():
                    got = self.status(path, method, key)
                    if role is None or role in granted({key_role}):
                        self.assertNotIn(got, (401, 403), f"{method} {path} with a {key_role} key")
                    else:
                        self.assertEqual(got, 403, f"{method} {path} with a {key_role} key")
                    checked += 1
        self.assertGreaterEqual(checked, len(ROLES) * len(ROUTE_ROLES))
        self.assertEqual(self.status("/no/such/route", "GET", None), 404)

    def test_the_roles_the_issue_asks_for(self):
        self.assertEqual(ROUTE_ROLES["/lists"], "admin")
        self.assertEqual(self.status("/lists", "GET", None), 401)  # issue 21: was 200 to anyone
        self.assertEqual(self.status("/lists", "GET", self.keys["viewer"]), 403)
        self.assertEqual(self.status("/lists", "GET", self.keys["admin"]), 200)
        self.assertIn("viewer", granted({"admin"}))
        self.assertNotIn("labeler", granted({"admin"}))  # admin alone is no labeler


def test_a_route_without_a_role_decision_stops_make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "ROUTES", [*app_module.ROUTES, (r"/new-route", HealthHandler)])
    with pytest.raises(RuntimeError, match="/new-route"):
        make_app(_config(tmp_path), FakeBackend())


def test_openapi_security_matches_the_table() -> None:
    document = json.loads((ROOT / "antispam" / "openapi.json").read_text(encoding="utf-8"))
    for documented, operations in document["paths"].items():
        path = documented.replace("{id}", "([0-9]{1,18})")  # a path parameter as the route's pattern
        assert path in ROUTE_ROLES, f"openapi.json documents {documented}, which has no role decision"
        for method, operation in operations.items():
            secured = bool(operation.get("security"))
            assert secured == (ROUTE_ROLES[path] is not None), f"{method.upper()} {path}: security in openapi.json"
            if secured:
                assert {"401", "403"} <= set(operation["responses"]), f"{method.upper()} {path}: 401/403"


def test_docs_route_role_table_is_the_code_table() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = role_table_markdown()
    assert table in docs, "docs/operations.md's route-role table differs from the code; replace it with:\n" + table


if __name__ == "__main__":
    print(role_table_markdown(), end="")
