"""The review queue over HTTP (issue 23): the real app on 127.0.0.1 (LiveServer), keys on,
moderators as threads making real requests; every test on SQLite and on PostgreSQL
(the ``feedback_db`` fixture)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from antispam.config import ServeConfig
from antispam.feedback_stores import open_store
from antispam.keys import add_key
from antispam.review_stores import review_queue_for
from antispam.testing.fakes import FakeBackend
from antispam.text import normalize
from tests.helpers.live_server import LiveServer
from tests.service.test_metrics import samples


def text_of(n: int) -> str:
    return f"代开发票请联系 {chr(0x4E00 + n)}{chr(0x5E00 + n)}{chr(0x6E00 + n)}"


def review_item(n: int) -> dict[str, Any]:
    return {"source": "review", "request_id": f"r{n:04d}", "index": 0, "data_id": f"msg-{n}", "key_id": "app",
            "time": 1.0, "policy": "default", "model_name": "cnn", "model_version": 7, "probability": 0.7,
            "suggestion": "review", "decided_by": "model", "matches": [], "text": text_of(n)}


class Client:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.key}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def service(feedback_db: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    keys_file = tmp_path / "keys.tsv"
    keys = {name: add_key(keys_file, name, roles, 1e6) for name, roles in
            [("mod-1", ["labeler", "viewer"]), ("mod-2", ["labeler", "viewer"]), ("mod-3", ["labeler"]),
             ("mod-4", ["labeler"]), ("ops", ["admin"]), ("app", ["predict"])]}
    config = ServeConfig(model_base=str(tmp_path / "models"), model_name="cnn", lists_dir=str(tmp_path / "lists"),
                         keys_file=str(keys_file), keys_poll_seconds=0.0, review_lease_seconds=60.0)
    store = open_store(feedback_db)
    server = LiveServer(config, lambda _config: FakeBackend(), feedback_store=store).start()
    try:
        yield {"server": server, "keys": keys, "queue": review_queue_for(store), "store": store,
               "client": {name: Client(server.url, key) for name, key in keys.items()}}
    finally:
        server.stop()
        store.close()


def test_four_moderators_decide_100_items_exactly_once(service: dict[str, Any]) -> None:
    queue = service["queue"]
    queue.enqueue([review_item(n) for n in range(100)])
    decided: dict[str, list[int]] = {}
    problems: list[Any] = []

    def moderator(name: str) -> None:
        client = service["client"][name]
        mine = decided.setdefault(name, [])
        while True:
            status, body = client.call("POST", "/review/next", {})
            if status != 200:
                problems.append((name, "next", status, body))
                return
            item = body["data"]
            if item is None:
                return
            verdict = "spam" if item["id"] % 3 else "pass"
            status, answer = client.call("POST", f"/review/{item['id']}/decision",
                                         {"lease": item["lease"]["token"], "verdict": verdict})
            if status != 200 or answer["data"]["repeated"]:
                problems.append((name, "decision", status, answer))
                return
            mine.append(item["id"])

    threads = [threading.Thread(target=moderator, args=(f"mod-{n}",)) for n in range(1, 5)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    print(f"\n100 items, 4 moderators, one process ({type(service['store']).__name__}): "
          f"{time.monotonic() - started:.2f} s; per moderator {({k: len(v) for k, v in decided.items()})}")
    assert problems == []
    every = [i for ids in decided.values() for i in ids]
    assert len(every) == 100 and len(set(every)) == 100, "an item was decided twice or not at all"
    assert sum(1 for ids in decided.values() if ids) >= 2  # the work really was shared
    status, stats = service["client"]["mod-1"].call("GET", "/review/stats")
    assert status == 200 and stats["data"]["depth"] == 0
    assert stats["data"]["decided"]["spam"] + stats["data"]["decided"]["pass"] == 100
    rows = service["store"].rows()
    assert len(rows) == 100 and {r.key_id for r in rows} <= {"mod-1", "mod-2", "mod-3", "mod-4"}
    for name, ids in decided.items():  # provenance: each verdict is its moderator's feedback row
        for item_id in ids:
            item = queue.get(item_id)
            assert item.reviewer == name and item.feedback_id in {r.id for r in rows if r.key_id == name}


def test_the_lease_and_its_refusals_are_json(service: dict[str, Any]) -> None:
    queue = service["queue"]
    queue.enqueue([review_item(1)])
    one, two = service["client"]["mod-1"], service["client"]["mod-2"]
    status, body = one.call("POST", "/review/next", {})
    item = body["data"]
    assert status == 200 and item["text"] == text_of(1) and item["policy"] == "default"
    assert item["model_version"] == 7 and item["source"] == "review" and "lease_token" not in item
    assert isinstance(item["explanation"]["reasons"], list)
    status, body = two.call("POST", "/review/next", {})
    assert status == 200 and body["data"] is None  # mod-1 holds the only item
    token = item["lease"]["token"]
    cases = [
        (two, {"lease": token, "verdict": "spam"}, 409, "lease_lost"),  # someone else's lease
        (one, {"lease": "nope", "verdict": "spam"}, 409, "lease_lost"),
        (one, {"lease": token, "verdict": "maybe"}, 400, "invalid_label"),
        (one, {"verdict": "spam"}, 400, "invalid_request"),
        (one, {"lease": token, "verdict": "spam", "reason": "x" * 501}, 400, "invalid_request"),
    ]
    for client, payload, want, code in cases:
        status, body = client.call("POST", f"/review/{item['id']}/decision", payload)
        assert (status, body["error"]["code"]) == (want, code), payload
    status, body = one.call("POST", f"/review/{item['id'] + 999}/decision", {"lease": token, "verdict": "spam"})
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = one.call("POST", "/review/next", {"exclude": "all"})
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    status, body = one.call("GET", "/review/stats?hours=0")
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    status, body = one.call("POST", f"/review/{item['id']}/decision", {"lease": token, "verdict": "spam",
                                                                        "reason": "invoice spam"})
    assert status == 200 and body["data"]["verdict"] == "spam" and body["data"]["reviewer"] == "mod-1"
    status, again = one.call("POST", f"/review/{item['id']}/decision", {"lease": token, "verdict": "spam"})
    assert status == 200 and again["data"]["repeated"] is True  # a retried request: the stored answer
    status, body = one.call("POST", f"/review/{item['id']}/decision", {"lease": token, "verdict": "pass"})
    assert (status, body["error"]["code"]) == (409, "already_decided")
    row = service["store"].rows(key_id="mod-1")[0]
    assert row.label == 1 and row.normalized == normalize(text_of(1))


def test_queue_metrics_for_the_people_on_call(service: dict[str, Any]) -> None:
    """/metrics: depth, oldest age and leased by source from the store (sampled at most every
    interval: a second scrape inside it does not read again), verdicts counted by this process."""
    queue, server = service["queue"], service["server"]
    sampler = server.app.services.metrics._review
    queue.enqueue([review_item(1), review_item(2)], now=time.time() - 120)
    queue.enqueue([{**review_item(3), "source": "appeal", "suggestion": "block", "appeal_reason": "mine"}],
                  now=time.time() - 30)

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
            return samples(response.read())

    m = scrape()
    depth = {s: m[("antispam_review_queue_depth", (("source", s),))] for s in ("review", "appeal")}
    assert depth == {"review": 2, "appeal": 1}
    assert 119 <= m[("antispam_review_queue_oldest_age_seconds", (("source", "review"),))] < 200
    assert 29 <= m[("antispam_review_queue_oldest_age_seconds", (("source", "appeal"),))] < 110
    assert m[("antispam_review_queue_leased", (("source", "review"),))] == 0
    assert m[("antispam_review_queue_sample_errors_total", ())] == 0
    client = service["client"]["mod-1"]
    item = client.call("POST", "/review/next", {})[1]["data"]  # the oldest: a review item
    assert client.call("POST", f"/review/{item['id']}/decision",
                       {"lease": item["lease"]["token"], "verdict": "spam"})[0] == 200
    reads = sampler.reads
    m = scrape()  # inside the interval: the same sample, no read; the verdict counter is live
    assert sampler.reads == reads and m[("antispam_review_queue_depth", (("source", "review"),))] == 2
    assert m[("antispam_review_verdicts_total", (("source", "review"), ("verdict", "spam")))] == 1
    assert m[("antispam_review_verdicts_total", (("source", "appeal"), ("verdict", "pass")))] == 0
    sampler.interval = 0.0  # as if the interval had passed
    second = client.call("POST", "/review/next", {})[1]["data"]
    m = scrape()
    assert sampler.reads == reads + 1 and m[("antispam_review_queue_depth", (("source", "review"),))] == 1
    assert m[("antispam_review_queue_leased", (("source", "review"),))] == 1 and second["source"] == "review"
    assert 119 <= m[("antispam_review_queue_oldest_age_seconds", (("source", "review"),))] < 200


def test_roles(service: dict[str, Any]) -> None:
    client = service["client"]
    assert client["ops"].call("POST", "/review/next", {})[0] == 403  # admin is no labeler
    assert client["app"].call("POST", "/review/next", {})[0] == 403
    assert client["ops"].call("GET", "/review/stats")[0] == 200  # viewer (admin implies it)
    assert client["mod-3"].call("GET", "/review/stats")[0] == 403  # labeler alone is no viewer


def test_a_lease_that_ran_out_moves_on_and_the_late_verdict_is_refused(service: dict[str, Any]) -> None:
    queue = service["queue"]
    queue.enqueue([review_item(1)])
    taken = queue.take("mod-1", 60, now=time.time() - 61)  # mod-1's lease, over a second ago
    status, body = service["client"]["mod-2"].call("POST", "/review/next", {})
    assert status == 200 and body["data"]["id"] == taken.id and body["data"]["leases"] == 2
    status, late = service["client"]["mod-1"].call("POST", f"/review/{taken.id}/decision",
                                                   {"lease": taken.lease_token, "verdict": "pass"})
    assert (status, late["error"]["code"]) == (409, "lease_lost")


def test_skip_releases_and_excludes(service: dict[str, Any]) -> None:
    service["queue"].enqueue([review_item(1), review_item(2)])
    client = service["client"]["mod-1"]
    first = client.call("POST", "/review/next", {})[1]["data"]
    assert client.call("POST", f"/review/{first['id']}/release", {"lease": first["lease"]["token"]})[0] == 200
    second = client.call("POST", "/review/next", {"exclude": [first["id"]]})[1]["data"]
    assert second["id"] != first["id"]
    assert service["client"]["mod-2"].call("POST", "/review/next", {})[1]["data"]["id"] == first["id"]


def test_no_store_is_503_json(tmp_path: Path) -> None:
    config = ServeConfig(model_base=str(tmp_path / "models"), model_name="cnn", lists_dir=str(tmp_path / "lists"))
    server = LiveServer(config, lambda _config: FakeBackend()).start()
    try:
        client = Client(server.url, "none")
        for method, path, body in [("POST", "/review/next", {}), ("GET", "/review/stats", None),
                                   ("POST", "/review/1/decision", {"lease": "x", "verdict": "spam"})]:
            status, answer = client.call(method, path, body)
            assert (status, answer["error"]["code"]) == (503, "review_unavailable")
    finally:
        server.stop()


def test_a_store_that_is_down_is_503_json_in_bounded_time(tmp_path: Path) -> None:
    """PostgreSQL unreachable (nothing listens on the port): every review and appeal route
    answers 503 review_unavailable JSON within the pool's wait, never a 500 or a hang."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    config = ServeConfig(model_base=str(tmp_path / "models"), model_name="cnn", lists_dir=str(tmp_path / "lists"))
    store = open_store(f"postgresql://antispam:pw@127.0.0.1:{dead}/antispam", timeout=1.0)
    server = LiveServer(config, lambda _config: FakeBackend(), feedback_store=store).start()
    try:
        client = Client(server.url, "none")
        for method, path, body in [("POST", "/review/next", {}), ("GET", "/review/stats", None),
                                   ("POST", "/review/1/decision", {"lease": "x", "verdict": "spam"}),
                                   ("POST", "/review/1/release", {"lease": "x"}),
                                   ("POST", "/appeals", {"data_id": "m", "reason": "why"})]:
            started = time.monotonic()
            status, answer = client.call(method, path, body)
            assert (status, answer["error"]["code"]) == (503, "review_unavailable"), (path, answer)
            assert "pw" not in answer["error"]["message"]
            assert time.monotonic() - started < 10
    finally:
        server.stop()
        store.close()
