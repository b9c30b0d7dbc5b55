"""Issue 11: API keys, roles, per-key rate limits, the feedback store's cap and daily quotas over
HTTP, and the `antispam keys` / `antispam feedback` commands."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from antispam.cli import main
from antispam.feedback import FeedbackStore
from antispam.keys import KeyRing, KeysFileError, TokenBuckets, add_key, hash_key, load_keys, parse_keys
from antispam.testing.fakes import FakeBackend
from tests.service.test_app import JSON, ApiTestCase


class AuthApiTest(ApiTestCase):
    def make_backend(self):
        return FakeBackend()

    def get_app(self):
        from antispam.app import make_app

        self.keys_file = self.tmp / "keys.tsv"
        self.keys = {name: add_key(self.keys_file, name, roles, rate) for name, roles, rate in (
            ("reader", ["predict"], 1000.0), ("moderator", ["predict", "feedback"], 1000.0),
            ("root", ["admin"], 1000.0), ("slow", ["predict"], 1.0), ("watcher", ["viewer"], 1000.0))}
        self.real_store = FeedbackStore(self.tmp / "feedback.db", daily_count=3, max_rows=5,
                                        synchronous="NORMAL")
        self.addCleanup(self.real_store.close)
        self.ring = KeyRing(self.keys_file, poll_seconds=0.0)
        return make_app(self.config, self.backend, feedback_store=self.real_store, keyring=self.ring)

    def as_(self, name: str | None, path: str, method: str = "GET", body: Any = None,
            header: str = "bearer") -> tuple[int, Any]:
        headers = dict(JSON) if body is not None else {}
        if name is not None:
            key = self.keys.get(name, name)
            if header == "bearer":
                headers["Authorization"] = f"Bearer {key}"
            else:
                headers["X-Api-Key"] = key
        return self.call(path, method, body, headers=headers)

    def test_missing_and_unknown_keys_are_401_json(self):
        result = self.as_(None, "/predict?text=hello")
        self.assert_error(result, 401, "unauthorized")
        response = self.fetch("/predict?text=hello")
        self.assertIn("Bearer", response.headers.get("WWW-Authenticate", ""))
        self.assert_error(self.as_("not-a-key", "/predict?text=hello"), 401, "unauthorized")
        self.assert_error(self.as_(None, "/feedback", "POST", {"text": "代开发票", "label": "spam"}),
                          401, "unauthorized")

    def test_both_headers_work_and_roles_give_403(self):
        self.assertEqual(self.as_("reader", "/predict?text=hello")[0], 200)
        self.assertEqual(self.as_("reader", "/predict?text=hello", header="x-api-key")[0], 200)
        self.assert_error(self.as_("reader", "/feedback", "POST", {"text": "代开发票", "label": "spam"}),
                          403, "forbidden")
        self.assert_error(self.as_("moderator", "/models"), 403, "forbidden")
        self.assertEqual(self.as_("root", "/models")[0], 200)
        self.assertEqual(self.as_("root", "/predict?text=hello")[0], 200)  # admin has every role

    def test_open_routes_need_no_key(self):
        for path in ("/healthz", "/readyz", "/openapi.json", "/metrics"):
            self.assertEqual(self.fetch(path).code, 200, path)
        self.assert_error(self.as_(None, "/nope"), 404, "not_found")

    def test_the_console_page_is_open_and_its_data_needs_a_key(self):
        self.assertEqual(self.fetch("/console/").code, 200)  # the page itself: it asks for a key
        self.assert_error(self.as_(None, "/console/api/live"), 401, "unauthorized")
        self.assert_error(self.as_("moderator", "/console/api/versions"), 403, "forbidden")
        # Issue 21: info shows thresholds and folder paths: viewer (admin implies it), like the rest.
        self.assert_error(self.as_("moderator", "/console/api/info"), 403, "forbidden")
        self.assertEqual(self.as_("root", "/console/api/live")[0], 200)
        self.assertEqual(self.as_("watcher", "/console/api/live")[0], 200)
        self.assertEqual(self.as_("watcher", "/models")[0], 200)
        self.assert_error(self.as_("watcher", "/lists"), 403, "forbidden")
        self.assert_error(self.as_("watcher", "/predict?text=hello"), 403, "forbidden")

    def test_rate_limit_is_429_with_retry_after(self):
        codes = [self.as_("slow", "/predict?text=hello")[0] for _ in range(3)]
        self.assertEqual(codes[:2], [200, 200])  # burst: twice the rate
        self.assertEqual(codes[2], 429)
        response = self.fetch("/predict?text=hello", headers={"X-Api-Key": self.keys["slow"]})
        self.assertEqual(response.code, 429)
        self.assertEqual(self.decode(response)["error"]["code"], "rate_limited")
        self.assertEqual(response.headers["Retry-After"], "1")
        self.assertEqual(self.as_("reader", "/predict?text=hello")[0], 200)  # per key id

    def test_a_shared_limiter_that_fails_closed_is_a_503_and_open_limits_per_process(self):
        """Issue 23: Redis unreachable (a port nothing listens on). fail=closed answers 503
        rate_limiter_unavailable; fail=open limits with this process's own buckets."""
        import socket

        from antispam.ratelimit import RedisTokenBuckets

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
        services = self._app.services
        services.buckets = RedisTokenBuckets(dead, fail="closed", timeout_ms=50)
        self.assert_error(self.as_("reader", "/predict?text=hello"), 503, "rate_limiter_unavailable")
        self.assertEqual(self.fetch("/healthz").code, 200)  # open routes take no token
        services.buckets = RedisTokenBuckets(dead, fail="open", timeout_ms=50)
        codes = [self.as_("slow", "/predict?text=hello")[0] for _ in range(3)]
        self.assertEqual(codes, [200, 200, 429])  # the per-process bucket: burst 2, then limited

    def test_feedback_records_the_key_id_and_quota_and_cap_answer(self):
        for text in ("代开发票一", "代开发票二", "代开发票三"):
            self.assertEqual(self.as_("moderator", "/feedback", "POST", {"text": text, "label": "spam"})[0], 202)
        self.assertEqual({r.key_id for r in self.real_store.rows()}, {"moderator"})
        response = self.fetch("/feedback", method="POST", body='{"text": "代开发票四", "label": "spam"}',
                              headers={**JSON, "X-Api-Key": self.keys["moderator"]})
        self.assertEqual((response.code, self.decode(response)["error"]["code"]), (429, "quota_exceeded"))
        self.assertGreater(int(response.headers["Retry-After"]), 0)
        self.assertEqual(self.as_("root", "/feedback", "POST", {"text": "贷款五", "label": "spam"})[0], 202)
        self.assertEqual(self.as_("root", "/feedback", "POST", {"text": "贷款六", "label": "spam"})[0], 202)
        self.assert_error(self.as_("root", "/feedback", "POST", {"text": "贷款七", "label": "spam"}),
                          507, "feedback_store_full")

    def test_keys_file_reloads_without_restart_and_keys_never_logged(self):
        with self.assertLogs("antispam", level=logging.DEBUG) as logs:
            logging.getLogger("antispam.access").setLevel(logging.DEBUG)
            new = add_key(self.keys_file, "late", ["predict"], 5.0)
            self.assertEqual(self.as_(new, "/predict?text=hello")[0], 200)
            lines = self.keys_file.read_text().splitlines()
            self.keys_file.write_text("\n".join(line for line in lines if not line.startswith("late\t")) + "\n")
            os.utime(self.keys_file, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
            self.assert_error(self.as_(new, "/predict?text=hello"), 401, "unauthorized")
            good = self.keys_file.read_text()
            self.keys_file.write_text(good + "garbage\n")  # issue 21: a broken file fails closed
            os.utime(self.keys_file, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
            self.assert_error(self.as_("reader", "/predict?text=hello"), 401, "unauthorized")
            self.assert_error(self.call("/readyz"), 503, "keys_file_invalid")
            metrics = self.fetch("/metrics").body.decode()
            self.assertIn("antispam_keys_file_valid 0.0", metrics)
            self.assertIn("antispam_keys_file_errors_total 1.0", metrics)
            self.keys_file.write_text(good)  # fixed: the same keys authenticate again, no restart
            os.utime(self.keys_file, ns=(time.time_ns() + 3 * 10**9, time.time_ns() + 3 * 10**9))
            self.assertEqual(self.as_("reader", "/predict?text=hello")[0], 200)
            self.assertEqual(self.call("/readyz")[0], 200)
            self.assertIn("antispam_keys_file_valid 1.0", self.fetch("/metrics").body.decode())
        text = "\n".join(logs.output) + self.fetch("/metrics").body.decode()
        for key in (*self.keys.values(), new):
            self.assertNotIn(key, text)
        self.assertIn("key=reader", text)

    def test_revoke_and_rotate_take_effect_without_restart(self):
        """Issue 21: `antispam keys revoke|rotate` against the file a running app reads."""
        path = str(self.keys_file)
        self.assertEqual(self.as_("moderator", "/predict?text=hello")[0], 200)
        self.assertEqual(main(["keys", "--keys-file", path, "revoke", "moderator"]), 0)
        self.assert_error(self.as_("moderator", "/predict?text=hello"), 401, "unauthorized")
        self.assertEqual(self.as_("reader", "/predict?text=hello")[0], 200)  # the others stay

        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            self.assertEqual(main(["keys", "--keys-file", path, "rotate", "reader"]), 0)
        new = out.getvalue().strip()
        self.assertTrue(new.startswith("as_") and new != self.keys["reader"])
        self.assert_error(self.as_("reader", "/predict?text=hello"), 401, "unauthorized")  # old key
        self.assertEqual(self.as_(new, "/predict?text=hello")[0], 200)
        self.assert_error(self.as_(new, "/feedback", "POST", {"text": "代开发票", "label": "spam"}),
                          403, "forbidden")  # same roles as before
        self.assertEqual(self.call("/readyz")[0], 200)

    def test_labeler_and_viewer_roles(self):
        lena = add_key(self.keys_file, "lena", ["labeler"], 1000.0)
        self.assertEqual(self.as_(lena, "/feedback", "POST", {"text": "代开发票八", "label": "spam"})[0], 202)
        self.assert_error(self.as_(lena, "/predict?text=hello"), 403, "forbidden")
        self.assert_error(self.as_(lena, "/console/api/versions"), 403, "forbidden")
        self.assertEqual({r.key_id for r in self.real_store.rows()}, {"lena"})


def test_rotate_keeps_id_roles_rate_and_comments_and_refuses_bad_files(tmp_path: Path) -> None:
    from antispam.keys import revoke_key, rotate_key

    path = tmp_path / "keys.tsv"
    first = add_key(path, "ops", ["predict", "viewer"], 2.5)
    add_key(path, "other", ["admin"], 1234567.0)
    before = path.read_text()
    key, entry = rotate_key(path, "other")
    after = path.read_text()
    assert after.splitlines()[0].startswith("#") and after.splitlines()[1] == before.splitlines()[1]
    assert after.splitlines()[2].split("\t")[2:] == before.splitlines()[2].split("\t")[2:]  # roles, rate as written
    keys = load_keys(path)
    assert keys[hash_key(key)] == entry and entry.roles == frozenset({"admin"}) and entry.rate == 1234567.0
    assert hash_key(first) in keys
    with pytest.raises(KeysFileError, match="no key id nobody"):
        revoke_key(path, "nobody")
    assert revoke_key(path, "ops").key_id == "ops" and hash_key(first) not in load_keys(path)
    path.write_text(path.read_text() + "broken line\n")
    with pytest.raises(KeysFileError):
        rotate_key(path, "other")  # never a change on top of a file the service would refuse
    assert "broken line" in path.read_text()


def test_keys_file_parsing_and_buckets(tmp_path: Path) -> None:
    digest = hash_key("k")
    keys = parse_keys(f"# comment\n\nops\t{digest}\tpredict,admin\t2.5\n")
    assert keys[digest].roles == frozenset({"predict", "admin"}) and keys[digest].rate == 2.5
    for bad in (f"ops\t{digest}\tpredict", "ops\tnothex\tpredict\t1", f"ops\t{digest}\troot\t1",
                f"ops\t{digest}\tpredict\t0", f"ops\t{digest}\tpredict\t1\nops\t{hash_key('x')}\tpredict\t1"):
        with pytest.raises(KeysFileError) as info:
            parse_keys(bad)
        assert digest not in str(info.value)
    now = [0.0]
    buckets = TokenBuckets(clock=lambda: now[0])
    assert [buckets.take("a", 2.0) for _ in range(5)] == [0.0, 0.0, 0.0, 0.0, 0.5]
    now[0] = 0.5
    assert buckets.take("a", 2.0) == 0.0 and buckets.take("a", 2.0) > 0


def test_keys_and_feedback_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys_file = tmp_path / "keys.tsv"
    assert main(["keys", "--keys-file", str(keys_file), "add", "ops", "--roles", "predict,feedback",
                 "--rate", "3"]) == 0
    key = capsys.readouterr().out.strip()
    assert key and key not in keys_file.read_text() and hash_key(key) in keys_file.read_text()
    assert load_keys(keys_file)[hash_key(key)].key_id == "ops"
    assert main(["keys", "--keys-file", str(keys_file), "add", "ops"]) == 2  # id taken
    capsys.readouterr()
    db = tmp_path / "f.db"
    store = FeedbackStore(db)
    for i, who in enumerate(["mallory", "mallory", "ops"]):
        store.add(f"文本{'甲乙丙'[i]}", f"文本{'甲乙丙'[i]}", 1, None, key_id=who, now=1_700_000_000.0 + i)
    store.close()
    assert main(["feedback", "--feedback-db", str(db), "list", "--key", "mallory"]) == 0
    assert capsys.readouterr().out.count("mallory") == 2
    assert main(["feedback", "--feedback-db", str(db), "export", "--since", "2023-11-14T22:13:21"]) == 0
    assert [line.count('"key_id"') for line in capsys.readouterr().out.splitlines()] == [1, 1]
    assert main(["feedback", "--feedback-db", str(db), "delete", "--key", "mallory"]) == 1  # no --yes
    assert main(["feedback", "--feedback-db", str(db), "delete"]) == 2
    assert main(["feedback", "--feedback-db", str(db), "delete", "--key", "mallory", "--yes"]) == 0
    assert [r.key_id for r in FeedbackStore(db).rows()] == ["ops"]


def test_a_missing_keys_file_fails_closed_until_keys_are_added(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys.tsv", poll_seconds=0.0)
    assert ring.keys == {} and ring.lookup("anything") is None
    key = add_key(tmp_path / "keys.tsv", "ops", ["predict"], 1.0)
    found = ring.lookup(key)
    assert found is not None and found.key_id == "ops"
    (tmp_path / "bad.tsv").write_text("not a keys line\n")
    with pytest.raises(KeysFileError):
        KeyRing(tmp_path / "bad.tsv")  # a bad file at start stops the service


def test_feedback_reassign_vouches_for_legacy_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "f.db"
    store = FeedbackStore(db)
    store.add("文本甲", "文本甲", 1, None, now=100.0)  # anonymous, as schema-1 rows become
    store.add("文本乙", "文本乙", 1, None, now=200.0)
    store.add("文本乙", "文本乙", 1, None, key_id="legacy", now=300.0)  # already there: stays
    store.close()
    args = ["feedback", "--feedback-db", str(db), "reassign", "--key", "anonymous", "--to", "legacy"]
    assert main(args) == 1 and main([*args, "--yes"]) == 0
    assert "reassigned 1 rows" in capsys.readouterr().out
    assert sorted((r.text, r.key_id) for r in FeedbackStore(db).rows()) == [
        ("文本乙", "anonymous"), ("文本乙", "legacy"), ("文本甲", "legacy")]


def test_callback_settings_in_the_keys_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 23: a key's optional fifth field holds its appeal callback (URL and shared secret)."""
    from antispam.keys import parse_line, rotate_key, set_callback

    digest = hash_key("k")
    key = parse_line(f"app\t{digest}\tpredict\t5\tcallback_url=https://h.example/hook "
                     "callback_secret=0123456789abcdef", "t")
    assert key is not None and (key.callback_url, key.callback_secret) == ("https://h.example/hook",
                                                                          "0123456789abcdef")
    assert "0123456789abcdef" not in repr(key)  # the secret is never printed with the key
    for settings, why in [("callback_url=https://h.example/x", "go together"),
                          ("callback_secret=0123456789abcdef", "go together"),
                          ("callback_url=ftp://h/x callback_secret=0123456789abcdef", "http"),
                          ("callback_url=https://h/x callback_secret=short", "16 characters"),
                          ("colour=blue", "name=value"), ("callback_url", "name=value")]:
        with pytest.raises(KeysFileError, match=why):
            parse_line(f"app\t{digest}\tpredict\t5\t{settings}", "t")
    path = tmp_path / "keys.tsv"
    add_key(path, "app", ["predict"], 5.0)
    assert main(["keys", "--keys-file", str(path), "callback", "app", "--url", "https://h.example/hook"]) == 0
    secret = capsys.readouterr().out.strip()
    [entry] = load_keys(path).values()
    assert entry.callback_url == "https://h.example/hook" and entry.callback_secret == secret and len(secret) >= 32
    _new, rotated = rotate_key(path, "app")  # rotation keeps the callback
    assert rotated.callback_secret == secret and next(iter(load_keys(path).values())).callback_secret == secret
    assert main(["keys", "--keys-file", str(path), "list"]) == 0
    listed = capsys.readouterr().out
    assert "callback https://h.example/hook" in listed and secret not in listed
    assert set_callback(path, "app", None) is None
    assert next(iter(load_keys(path).values())).callback_url is None
    assert main(["keys", "--keys-file", str(path), "callback", "app", "--url", "nope"]) == 2
