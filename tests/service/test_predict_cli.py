"""``antispam predict``: local model by default, or --url of a running service."""

from __future__ import annotations

import asyncio
import io
import json
import threading

import pytest

from antispam.cli import main
from antispam.testing import tinymodel
from antispam.testing.fakes import FakeBackend

FIELDS = {"text", "predict", "label", "spam_probability", "suggestion", "model", "coverage",
          "decided_by", "policy"}


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("predict") / "models"
    tinymodel.build_version(base / "rnn")  # the default model name
    return base


def test_local_model_scores_each_text(models, capsys):
    assert main(["predict", "--model-base", str(models), tinymodel.SPAM_TEXT, tinymodel.PASS_TEXT]) == 0
    got = lines(capsys.readouterr().out)
    assert [set(item) for item in got] == [FIELDS, FIELDS]
    assert [(g["text"], g["predict"], g["label"]) for g in got] == [
        (tinymodel.SPAM_TEXT, 0, "spam"), (tinymodel.PASS_TEXT, 1, "pass")]
    assert got[0]["model"] == {"name": "rnn", "version": 1}


def test_texts_from_standard_input(models, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{tinymodel.PASS_TEXT}\n{tinymodel.SPAM_TEXT}\n"))
    assert main(["predict", "--model-base", str(models)]) == 0
    assert [g["label"] for g in lines(capsys.readouterr().out)] == ["pass", "spam"]


def test_local_errors_are_messages(models, tmp_path, capsys):
    assert main(["predict", "--model-base", str(tmp_path), "好"]) == 2
    assert "no usable model version" in capsys.readouterr().err
    assert main(["predict", "--model-base", str(models), "好", "🙂"]) == 2
    assert "text[1]" in capsys.readouterr().err


def test_local_explain_policy_and_lists(models, tmp_path, capsys):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "block.txt").write_text("你好\n", encoding="utf-8")
    policies = tmp_path / "policies.json"
    policies.write_text('{"strict": {"review_threshold": 0, "block_threshold": 0}}', encoding="utf-8")
    args = ["predict", "--model-base", str(models), "--lists-dir", str(lists), "--policies-file", str(policies)]
    assert main([*args, "--explain", tinymodel.SPAM_TEXT, "你好！"]) == 0
    spam, hello = lines(capsys.readouterr().out)
    assert "reasons" in spam and spam["decided_by"] == "model"
    assert hello["decided_by"] == "block_list" and hello["matches"][0]["end"] == 2
    assert main([*args, "--policy", "strict", tinymodel.PASS_TEXT]) == 0
    assert lines(capsys.readouterr().out)[0]["policy"] == "strict"
    assert main([*args, "--policy", "nope", "x"]) == 2
    assert "known policies: default, strict" in capsys.readouterr().err


def test_local_contacts(models, capsys):
    text = "详询１３８ ００１３ ８０００"
    assert main(["predict", "--model-base", str(models), "--contacts", text, tinymodel.PASS_TEXT]) == 0
    phone, plain = lines(capsys.readouterr().out)
    [contact] = phone["contacts"]
    assert (contact["kind"], contact["value"]) == ("mobile", "13800138000")
    assert text[contact["start"]:contact["end"]] == "１３８ ００１３ ８０００"
    assert plain["contacts"] == []
    assert main(["predict", "--model-base", str(models), text]) == 0
    assert "contacts" not in lines(capsys.readouterr().out)[0]


@pytest.fixture
def service():
    """A real HTTP service (fake backend) on a thread of its own."""
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    from antispam.app import make_app
    from antispam.config import ServeConfig

    started = threading.Event()
    state: dict = {}

    def run() -> None:
        async def serve() -> None:
            app = make_app(ServeConfig(max_chars=30), FakeBackend())
            sockets = bind_sockets(0, "127.0.0.1")
            server = HTTPServer(app)
            server.add_sockets(sockets)
            state.update(url=f"http://127.0.0.1:{sockets[0].getsockname()[1]}",
                         stop=asyncio.Event(), loop=asyncio.get_running_loop())
            started.set()
            await state["stop"].wait()
            server.stop()

        asyncio.run(serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30)
    yield state["url"]
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


def test_url_sends_texts_to_the_service(service, capsys):
    texts = [tinymodel.SPAM_TEXT, tinymodel.PASS_TEXT] * 60  # more than one request's worth (100 per POST)
    assert main(["predict", "--url", service, *texts]) == 0
    got = lines(capsys.readouterr().out)
    assert [g["text"] for g in got] == texts
    assert [g["label"] for g in got[:2]] == ["spam", "pass"]
    assert got[0]["model"] == {"name": "fake-model", "version": 7}


def test_url_errors_are_messages(service, capsys):
    assert main(["predict", "--url", service, "发" * 31]) == 2
    assert "413" in capsys.readouterr().err
    assert main(["predict", "--url", "http://127.0.0.1:9", "好"]) == 2
    assert "cannot reach" in capsys.readouterr().err
