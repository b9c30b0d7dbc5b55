"""Appeals and their signed callbacks (issue 23 item 3), end to end on the real app: /predict
decides (the decision log stores it; ``review`` decisions enter the queue through its listener),
the calling backend appeals a block, a moderator reverses it, and the caller's receiver (a
Tornado server on 127.0.0.1) gets the signed outcome, after failing the first attempts.
Every test on SQLite and on PostgreSQL (the ``feedback_db`` fixture)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from antispam.callbacks import DELIVERY_HEADER, SIGNATURE_HEADER, sign, verify
from antispam.config import ServeConfig
from antispam.decisions import DecisionLog
from antispam.feedback_stores import open_store
from antispam.keys import add_key
from antispam.review_stores import review_queue_for
from antispam.testing.fakes import FakeBackend
from tests.helpers.live_server import LiveServer
from tests.service.test_metrics import samples
from tests.service.test_review_api import Client

SECRET = "s3cret-for-the-callback-0123456789"
BLOCKED = "代开发票，优惠贷款，加微信"
REVIEWED = "明天一起领红包吗，先加个群"


def score(tokens: Any) -> float:
    tokens = set(tokens)
    if {"发票", "贷款", "代开"} & tokens:
        return 0.97
    if "红包" in tokens:
        return 0.7
    return 0.05


class Receiver:
    """The caller's callback endpoint: answers 500 to the first ``fail`` deliveries, then 200."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.received: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.port = 0

    async def _main(self) -> None:
        outer = self

        class Hook(tornado.web.RequestHandler):
            def post(self) -> None:
                outer.received.append({"at": time.time(), "body": self.request.body,
                                       "headers": dict(self.request.headers)})
                if len(outer.received) <= outer.fail:
                    self.set_status(500)
                self.finish("ok")

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/hook", Hook)]))
        server.add_sockets(sockets)
        self._ready.set()
        await self._stop.wait()
        server.stop()

    def start(self) -> "Receiver":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.fixture
def world(feedback_db: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    receiver = Receiver(fail=2).start()
    keys_file = tmp_path / "keys.tsv"
    keys = {"app": add_key(keys_file, "app", ["predict"], 1e6), "other": add_key(keys_file, "other", ["predict"], 1e6),
            "mod": add_key(keys_file, "mod", ["labeler", "viewer"], 1e6)}
    lines = keys_file.read_text().splitlines()
    keys_file.write_text("\n".join(line + f"\tcallback_url=http://127.0.0.1:{receiver.port}/hook "
                                   f"callback_secret={SECRET}" if line.startswith("app\t") else line
                                   for line in lines) + "\n")
    config = ServeConfig(model_base=str(tmp_path / "models"), model_name="cnn", lists_dir=str(tmp_path / "lists"),
                         keys_file=str(keys_file), keys_poll_seconds=0.0, callback_backoff_s=0.2,
                         appeals_per_minute=600.0)
    store = open_store(feedback_db)
    log = DecisionLog(store)
    server = LiveServer(config, lambda _config: FakeBackend(score), feedback_store=store, decision_log=log).start()
    try:
        yield {"server": server, "store": store, "queue": review_queue_for(store), "receiver": receiver,
               "client": {name: Client(server.url, key) for name, key in keys.items()}}
    finally:
        server.stop()
        log.close(5)
        receiver.stop()
        store.close()


def predict(world: dict[str, Any], text: str, data_id: str) -> dict[str, Any]:
    status, body = world["client"]["app"].call("POST", "/predict", {"text": text, "data_id": data_id})
    assert status == 200, body
    request_id = body["request_id"]
    wait_for(lambda: world["store"].find_decisions(request_id=request_id))  # the writer stored it
    return body


def test_review_decisions_enter_the_queue_off_the_request_path(world: dict[str, Any]) -> None:
    answer = predict(world, REVIEWED, "m-1")
    assert answer["data"]["suggestion"] == "review"
    stats = wait_for(lambda: (lambda s: s if s["depth"] == 1 else None)(world["queue"].stats()))
    assert stats["by_source"] == {"review": 1, "appeal": 0}
    status, body = world["client"]["mod"].call("POST", "/review/next", {})
    item = body["data"]
    assert status == 200 and item["request_id"] == answer["request_id"] and item["text"] == REVIEWED
    assert item["data_id"] == "m-1" and item["key_id"] == "app" and item["policy"] == "default"
    assert item["model_version"] == 7 and item["suggestion"] == "review"
    with urllib.request.urlopen(world["server"].url + "/metrics", timeout=10) as response:
        m = samples(response.read())
    entered = {o: m[("antispam_review_listener_decisions_total", (("outcome", o),))]
               for o in ("queued", "without_text", "failed")}
    assert entered == {"queued": 1, "without_text": 0, "failed": 0}


def test_appeal_reversed_is_called_back_signed_after_retries(world: dict[str, Any]) -> None:
    answer = predict(world, BLOCKED, "m-2")
    assert answer["data"]["suggestion"] == "block"
    app, mod = world["client"]["app"], world["client"]["mod"]
    status, body = app.call("POST", "/appeals", {"data_id": "m-2", "reason": "my shop really does invoices"})
    assert status == 202 and body["data"]["new"] is True and body["data"]["state"] == "queued"
    appeal_id = body["data"]["appeal_id"]
    status, again = app.call("POST", "/appeals", {"request_id": answer["request_id"], "reason": "again"})
    assert status == 200 and again["data"]["appeal_id"] == appeal_id and again["data"]["new"] is False
    status, item = mod.call("POST", "/review/next", {})
    item = item["data"]
    assert item["source"] == "appeal" and item["appeal_reason"] == "my shop really does invoices"
    assert item["suggestion"] == "block" and item["text"] == BLOCKED
    status, decided = mod.call("POST", f"/review/{appeal_id}/decision",
                               {"lease": item["lease"]["token"], "verdict": "pass", "reason": "a real shop"})
    assert status == 200 and decided["data"]["verdict"] == "pass"
    receiver = world["receiver"]
    wait_for(lambda: len(receiver.received) >= 3, timeout=30)  # two 500s, then delivered
    time.sleep(0.5)
    assert len(receiver.received) == 3  # delivered once it got its 2xx, never again
    first, second, third = receiver.received
    assert first["headers"][DELIVERY_HEADER] == third["headers"][DELIVERY_HEADER]  # one delivery id
    assert second["at"] - first["at"] >= 0.15 and third["at"] - second["at"] >= 0.3  # backoff doubles
    payload = json.loads(third["body"])
    assert payload["event"] == "appeal.decided" and payload["reversed"] is True
    assert payload["request_id"] == answer["request_id"] and payload["data_id"] == "m-2"
    assert payload["verdict"] == "pass" and payload["reason"] == "a real shop"
    header = third["headers"][SIGNATURE_HEADER]
    assert verify(SECRET, third["body"], header)
    assert not verify("another-secret-0123456789", third["body"], header)
    assert not verify(SECRET, third["body"] + b" ", header)
    stamp = int(header.split(",")[0][2:])
    assert not verify(SECRET, third["body"], header, now=stamp + 301)  # replay after the tolerance
    assert world["queue"].stats()["callbacks"] == {"pending": 0, "delivered": 1, "failed": 0}
    status, view = app.call("POST", "/appeals", {"data_id": "m-2", "reason": "status?"})
    assert status == 200 and view["data"]["state"] == "decided" and view["data"]["reversed"] is True
    row = world["store"].rows(key_id="mod")[0]
    assert row.label == 0 and row.text == BLOCKED  # the reversal is trusted feedback
    # the on-call view of the same story (/metrics of this process)
    with urllib.request.urlopen(world["server"].url + "/metrics", timeout=10) as response:
        m = samples(response.read())
    assert m[("antispam_appeal_callbacks_total", (("outcome", "delivered"),))] == 1
    assert m[("antispam_appeal_callbacks_total", (("outcome", "retried"),))] == 2
    assert m[("antispam_appeal_callbacks_total", (("outcome", "failed"),))] == 0
    assert m[("antispam_review_verdicts_total", (("source", "appeal"), ("verdict", "pass")))] == 1
    assert m[("antispam_review_verdicts_total", (("source", "review"), ("verdict", "pass")))] == 0


def test_appeal_refusals(world: dict[str, Any]) -> None:
    app, other = world["client"]["app"], world["client"]["other"]
    passed = predict(world, "妈妈我们明天回家吃晚饭", "m-3")
    blocked = predict(world, BLOCKED, "m-4")
    cases = [
        (app, {"reason": "x"}, 400, "invalid_request"),
        (app, {"data_id": "m-4"}, 400, "invalid_request"),  # no reason
        (app, {"data_id": "m-4", "reason": "x" * 501}, 400, "invalid_request"),
        (app, {"data_id": "m-4", "reason": "x", "index": -1}, 400, "invalid_request"),
        (app, {"data_id": "nope", "reason": "x"}, 404, "not_found"),
        (other, {"data_id": "m-4", "reason": "x"}, 404, "not_found"),  # another key's decision
        (app, {"request_id": passed["request_id"], "reason": "x"}, 409, "not_blocked"),
        (world["client"]["mod"], {"data_id": "m-4", "reason": "x"}, 403, "forbidden"),
    ]
    for client, payload, want, code in cases:
        status, body = client.call("POST", "/appeals", payload)
        assert (status, body["error"]["code"]) == (want, code), payload
    assert blocked["data"]["suggestion"] == "block"


def test_appeals_are_rate_limited_per_key(world: dict[str, Any]) -> None:
    world["server"].app.services.config.appeals_per_minute = 1.0  # one now, the next in a minute
    app, other = world["client"]["app"], world["client"]["other"]
    assert app.call("POST", "/appeals", {"data_id": "none", "reason": "x"})[0] == 404
    status, body = app.call("POST", "/appeals", {"data_id": "none", "reason": "x"})
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert other.call("POST", "/appeals", {"data_id": "none", "reason": "x"})[0] == 404  # its own bucket


def test_sign_and_verify() -> None:
    body = b'{"event":"appeal.decided"}'
    header = sign(SECRET, body, 1_800_000_000)
    assert header.startswith("t=1800000000,v1=") and verify(SECRET, body, header, now=1_800_000_100)
    assert not verify(SECRET, body, header, now=1_800_000_400)
    assert verify(SECRET, body, header + ",v1=" + "0" * 64, now=1_800_000_000)  # rotation: any v1
    for bad in ("", "t=x,v1=ab", "v1=ab", "t=1800000000"):
        assert not verify(SECRET, body, bad, now=1_800_000_000)


def test_a_pending_callback_survives_a_restart(feedback_db: str, tmp_path: Path) -> None:
    """The outcome is a row of the store, written with the verdict: a process that stops before
    sending it loses nothing; the next one (here: a new store object and a new sender) sends it.
    A key without a callback setting gives the row up at once, with the reason."""
    from antispam.callbacks import CallbackSender
    from antispam.keys import KeyRing
    from antispam.text import normalize

    receiver = Receiver(fail=0).start()
    keys_file = tmp_path / "keys.tsv"
    add_key(keys_file, "app", ["predict"], 10.0)
    add_key(keys_file, "gone", ["predict"], 10.0)
    lines = keys_file.read_text().splitlines()
    keys_file.write_text("\n".join(line + f"\tcallback_url=http://127.0.0.1:{receiver.port}/hook "
                                   f"callback_secret={SECRET}" if line.startswith("app\t") else line
                                   for line in lines) + "\n")
    first = review_queue_for(open_store(feedback_db))
    for n, key_id in enumerate(["app", "gone"]):
        first.enqueue([{"source": "appeal", "request_id": f"r-{n}", "key_id": key_id, "suggestion": "block",
                        "text": BLOCKED, "appeal_reason": "please"}])
        taken = first.take("mod", 60)
        first.decide(taken.id, taken.lease_token, "mod", "pass", None, normalize, notify=True)
    first.close()  # the process stops before any callback is sent
    try:
        again = review_queue_for(open_store(feedback_db))
        sender = CallbackSender(again, KeyRing(keys_file), backoff_s=0.1, max_attempts=3)
        delivered = asyncio.run(sender.deliver_due())
        assert delivered == 1 and len(receiver.received) == 1
        payload = json.loads(receiver.received[0]["body"])
        assert payload["request_id"] == "r-0" and payload["reversed"] is True
        assert verify(SECRET, receiver.received[0]["body"], receiver.received[0]["headers"][SIGNATURE_HEADER])
        assert again.stats()["callbacks"] == {"pending": 0, "delivered": 1, "failed": 1}
        assert asyncio.run(sender.deliver_due()) == 0 and len(receiver.received) == 1  # not sent twice
        again.close()
    finally:
        receiver.stop()
