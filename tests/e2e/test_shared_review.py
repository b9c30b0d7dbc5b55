"""Issue 23 acceptance: the review queue across two real ``antispam serve`` processes on one
PostgreSQL. ``/predict`` traffic to both decides ``review`` (thresholds set so nearly every text
is), each process's decision log feeds the one queue, and four moderators (two per process,
threads making real HTTP requests) take and decide until it is empty: no item is ever handed
to two moderators, and every item is decided exactly once.

Needs the PostgreSQL .ci/run starts (ANTISPAM_TEST_POSTGRES_URL); skips without it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

from tests.helpers.serve_process import ServeProcess, request
from tests.helpers.stores import fresh_schema, postgres_url

WORDS = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥"



@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from antispam.keys import add_key
    from antispam.testing.tinymodel import build_version

    base_pg = postgres_url()
    root = tmp_path_factory.mktemp("shared-review")
    build_version(root / "models" / "cnn")
    keys_file = root / "keys.tsv"
    keys = {"client": add_key(keys_file, "client", ["predict", "viewer"], 1e6)}
    keys.update({f"mod-{n}": add_key(keys_file, f"mod-{n}", ["labeler"], 1e6) for n in range(1, 5)})
    db, drop = fresh_schema(base_pg)
    common = ("--backend", "local", "--model-base", str(root / "models"), "--model-name", "cnn",
              "--keys-file", str(keys_file), "--cache-size", "0", "--deadline-ms", "60000",
              "--feedback-db", db, "--review-threshold", "0.000001", "--block-threshold", "0.999999",
              "--min-tokens-to-block", "0")
    processes = [ServeProcess(*common, cwd=root) for _ in range(2)]
    try:
        for process in processes:
            process.wait_ready(timeout=180)
        yield {"ports": [p.port for p in processes], "keys": keys, "db": db}
    finally:
        for process in processes:
            process.stop()
        drop()


def test_100_review_items_four_moderators_two_processes(two: dict[str, Any]) -> None:
    ports, keys = two["ports"], two["keys"]
    reviews = 0
    for n in range(10):  # 10 requests of 10 texts, to both processes in turn
        texts = [f"今天{WORDS[n]}{WORDS[m]}一起吃饭吗，顺便聊聊{WORDS[(n + m) % len(WORDS)]}" for m in range(10)]
        status, body = request(ports[n % 2], "POST", "/predict", keys["client"], {"texts": texts})
        assert status == 200, body
        reviews += sum(1 for item in body["data"] if item["suggestion"] == "review")
    assert reviews >= 95, f"only {reviews} of 100 texts were sent to review; the thresholds did not apply"
    deadline = time.monotonic() + 30
    while True:  # the decision logs' writers enqueue them, off the request path
        status, stats = request(ports[0], "GET", "/review/stats", keys["client"])
        assert status == 200, stats
        if stats["data"]["depth"] == reviews or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert stats["data"]["depth"] == reviews

    handed: list[tuple[int, str]] = []
    decided: list[tuple[int, str]] = []
    problems: list[Any] = []
    lock = threading.Lock()

    def moderator(name: str, port: int) -> None:
        while True:
            status, body = request(port, "POST", "/review/next", keys[name], {})
            if status != 200:
                problems.append((name, status, body))
                return
            item = body["data"]
            if item is None:
                return
            with lock:
                handed.append((item["id"], name))
            verdict = "spam" if item["id"] % 2 else "pass"
            status, answer = request(port, "POST", f"/review/{item['id']}/decision", keys[name],
                                     {"lease": item["lease"]["token"], "verdict": verdict})
            if status != 200 or answer["data"]["repeated"]:
                problems.append((name, status, answer))
                return
            with lock:
                decided.append((item["id"], name))

    moderators = [threading.Thread(target=moderator, args=(f"mod-{n}", ports[n % 2])) for n in range(1, 5)]
    started = time.monotonic()
    for thread in moderators:
        thread.start()
    for thread in moderators:
        thread.join(300)
    elapsed = time.monotonic() - started
    assert problems == []
    ids = [item_id for item_id, _name in handed]
    assert len(ids) == len(set(ids)) == reviews, "an item was handed to two moderators (or lost)"
    assert sorted(decided) == sorted(handed)  # each decided once, by whoever was handed it
    per_moderator = {name: sum(1 for _i, n in decided if n == name) for name in keys if name != "client"}
    print(f"\n{reviews} items, 4 moderators on 2 processes: decided in {elapsed:.2f} s; per moderator "
          f"{per_moderator}")
    assert sum(1 for count in per_moderator.values() if count) >= 2
    for port in ports:  # both processes read the one queue
        status, stats = request(port, "GET", "/review/stats", keys["client"])
        assert stats["data"]["depth"] == 0
        assert stats["data"]["decided"]["spam"] + stats["data"]["decided"]["pass"] == reviews

    from antispam.feedback_stores import open_store

    store = open_store(two["db"])
    try:
        rows = store.rows()
        assert sum(r.count for r in rows) == reviews  # each verdict is one feedback report
        assert {r.key_id for r in rows} <= {"mod-1", "mod-2", "mod-3", "mod-4"}
    finally:
        store.close()


def test_a_late_verdict_from_the_other_process_is_refused(two: dict[str, Any]) -> None:
    """A lease taken on one process, run out, taken again on the other: the first holder's verdict
    is a 409 on either process."""
    ports, keys = two["ports"], two["keys"]
    status, body = request(ports[0], "POST", "/predict", keys["client"], {"text": "周末一起去爬山吗，带上水"})
    assert status == 200 and body["data"]["suggestion"] == "review"
    request_id = body["request_id"]
    from antispam.feedback_stores import open_store
    from antispam.review_stores import review_queue_for

    store = open_store(two["db"])
    try:
        queue = review_queue_for(store)
        assert queue is not None
        deadline = time.monotonic() + 30
        mine = None
        while mine is None and time.monotonic() < deadline:
            mine = queue.take("mod-1", 60, now=time.time() - 61)  # a lease already over
            if mine is not None and mine.request_id != request_id:
                pytest.fail(f"unexpected item {mine}")
            time.sleep(0.05)
        assert mine is not None
        status, body = request(ports[1], "POST", "/review/next", keys["mod-2"], {})
        assert status == 200 and body["data"]["id"] == mine.id
        for port in ports:
            status, late = request(port, "POST", f"/review/{mine.id}/decision", keys["mod-1"],
                                   {"lease": mine.lease_token, "verdict": "spam"})
            assert (status, late["error"]["code"]) == (409, "lease_lost")
        status, ok = request(ports[0], "POST", f"/review/{mine.id}/decision", keys["mod-2"],
                             {"lease": body["data"]["lease"]["token"], "verdict": "pass"})
        assert status == 200 and ok["data"]["reviewer"] == "mod-2"
    finally:
        store.close()
