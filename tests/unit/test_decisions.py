"""The decision log's queue and writer (antispam/decisions.py): never blocks, never raises into
the request, drops with a count when the queue is full or the store fails, flushes at close.

The store is real (a SQLite file or a PostgreSQL schema, ``open_feedback``); where a test must
hold the writer still, :class:`Gated` wraps the real store and waits on an event first.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

from antispam.decisions import Decision, DecisionLog, TextRetention, from_items, text_sha256
from antispam.feedback_stores import open_store

Opener = Callable[..., Any]


def decisions(n: int, *, request_id: str = "r", suggestion: str = "block") -> list[Decision]:
    now = time.time()
    return [Decision(request_id=request_id, index=i, time=now, key_id="k", policy="default", model_name="rnn",
                     model_version=1, probability=0.9, suggestion=suggestion, decided_by="model",
                     text_sha256=text_sha256(f"t{i}"), text=f"t{i}") for i in range(n)]


class Gated:
    """The real store behind a gate: ``add_decisions`` waits until the test opens it."""

    def __init__(self, store: Any) -> None:
        self.store, self.location = store, store.location
        self.gate = threading.Event()
        self.entered = threading.Event()

    def add_decisions(self, batch: Sequence[Decision]) -> int:
        self.entered.set()
        self.gate.wait(10)
        return int(self.store.add_decisions(batch))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_records_reach_the_store_in_batches_and_listeners_see_them(open_feedback: Opener) -> None:
    store = open_feedback()
    log = DecisionLog(store, queue_size=1000, batch=50, linger=0.05)
    seen: list[int] = []
    log.add_listener(lambda batch: seen.append(len(batch)))
    log.add_listener(lambda batch: 1 / 0)  # a broken listener is logged and counted, nothing more
    assert log.submit(decisions(120)) == 120
    wait_for(lambda: log.written == 120)
    assert log.close(5)
    assert sum(seen) == 120 and max(seen) <= 50
    assert log.listener_errors >= 1 and log.dropped == {"queue_full": 0, "store_error": 0, "shutdown": 0}
    assert len(store.find_decisions(request_id="r", limit=1000)) == 120


def test_a_full_queue_drops_and_counts_without_blocking(open_feedback: Opener) -> None:
    gated = Gated(open_feedback())
    log = DecisionLog(gated, queue_size=10, batch=5, linger=0.0)
    log.submit(decisions(1, request_id="first"))
    assert gated.entered.wait(5)  # the writer holds one record and waits at the gate
    started = time.perf_counter()
    queued = log.submit(decisions(25, request_id="second"))
    elapsed = time.perf_counter() - started
    assert queued == 10 and log.dropped["queue_full"] == 15
    assert elapsed < 1.0  # it returned instead of waiting for room (the writer is stuck for 10 s)
    gated.gate.set()
    assert log.close(10)
    assert log.written == 11
    assert len(gated.store.find_decisions(request_id="second", limit=1000)) == 10


def test_a_failing_store_drops_counts_and_recovers(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    broken = open_store(str(blocker / "feedback.db"))
    log = DecisionLog(broken, queue_size=100, batch=10, linger=0.0)
    assert log.submit(decisions(7)) == 7  # queued; the request is done
    wait_for(lambda: log.dropped["store_error"] == 7)
    assert log.written == 0 and log.last_error and "FeedbackError" in log.last_error
    # The store comes back (here: a working store behind the same log); writing goes on.
    log.store = open_store(str(tmp_path / "feedback.db"))
    log.submit(decisions(3, request_id="after"))
    wait_for(lambda: log.written == 3)
    assert log.last_error is None
    assert log.close(5)


def test_close_flushes_what_is_queued(open_feedback: Opener) -> None:
    store = open_feedback()
    log = DecisionLog(store, queue_size=5000, batch=100, linger=0.5)
    log.submit(decisions(1000))
    assert log.close(10)
    assert log.written == 1000
    assert len(store.find_decisions(request_id="r", limit=1000)) == 1000
    assert log.submit(decisions(2)) == 0 and log.dropped["shutdown"] == 2  # closed: counted, not queued


def test_close_gives_up_after_its_timeout_and_counts_the_rest(open_feedback: Opener) -> None:
    gated = Gated(open_feedback())
    log = DecisionLog(gated, queue_size=100, batch=5, linger=0.0)
    log.submit(decisions(1, request_id="stuck"))
    assert gated.entered.wait(5)
    log.submit(decisions(20))
    started = time.monotonic()
    assert log.close(0.5) is False
    assert time.monotonic() - started < 2.0
    assert log.dropped["shutdown"] == 20
    gated.gate.set()


def test_the_retention_decides_which_texts_are_stored(open_feedback: Opener) -> None:
    store = open_feedback()
    log = DecisionLog(store, retention=TextRetention(2, frozenset({"block"})), linger=0.0)
    log.submit(decisions(1, request_id="b", suggestion="block") + decisions(1, request_id="p", suggestion="pass")
               + decisions(1, request_id="v", suggestion="review"))
    assert log.close(5)
    [block] = store.find_decisions(request_id="b")
    assert block.text == "t0" and block.text_until == pytest.approx(block.time + 2 * 86400)
    assert [d.text for d in store.find_decisions(request_id="p") + store.find_decisions(request_id="v")] == \
        [None, None]
    nothing = DecisionLog(store, retention=TextRetention(0), linger=0.0)
    nothing.submit(decisions(1, request_id="zero"))
    assert nothing.close(5)
    assert store.find_decisions(request_id="zero")[0].text is None


def test_text_retention_settings_are_checked() -> None:
    assert TextRetention.parse(30, "block, review") == TextRetention(30.0, frozenset({"block", "review"}))
    assert TextRetention.parse(0, "") == TextRetention(0.0, frozenset())
    with pytest.raises(ValueError, match="unknown suggestions"):
        TextRetention.parse(30, "block,spam")
    with pytest.raises(ValueError):
        TextRetention.parse(-1, "block")


def test_records_are_built_from_the_answer_items() -> None:
    items = [{"spam_probability": 0.98, "suggestion": "block", "model": {"name": "rnn", "version": 3},
              "decided_by": "block_list", "policy": "strict",
              "matches": [{"term": "代开", "list": "block", "list_set": "default", "start": 0, "end": 2}],
              "contacts": [{"kind": "mobile", "start": 5, "end": 16}], "capped": None},
             {"spam_probability": 0.1, "suggestion": "pass", "model": {"name": "rnn", "version": 3},
              "decided_by": "model", "policy": "strict"}]
    built = from_items(items, ["代开发票 13800138000", "你好"], request_id="abc", key_id="k9",
                       data_ids=["m1", None], now=5.0)
    assert built[0] == Decision(request_id="abc", index=0, time=5.0, key_id="k9", policy="strict",
                                model_name="rnn", model_version=3, probability=0.98, suggestion="block",
                                decided_by="block_list", text_sha256=text_sha256("代开发票 13800138000"),
                                data_id="m1", matches=(("代开", "block", 0, 2),), contacts=("mobile",),
                                text="代开发票 13800138000")
    assert (built[1].index, built[1].data_id, built[1].matches, built[1].text) == (1, None, (), "你好")
    shown = built[0].as_dict()
    assert shown["model"] == {"name": "rnn", "version": 3} and shown["spam_probability"] == 0.98
    assert shown["matches"] == [{"term": "代开", "list": "block", "start": 0, "end": 2}]
