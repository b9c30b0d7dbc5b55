"""The review queue's contract (issue 23, antispam.review): the same test bodies against the
SQLite queue and the PostgreSQL queue (tests/helpers/stores.py ``feedback_db``)."""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest

from antispam.feedback import FeedbackRefused
from antispam.review import AlreadyDecided, ItemNotFound, LeaseLost, ReviewError, backoff, depth_history
from antispam.review_stores import review_queue_for
from antispam.text import normalize

T0 = 1_800_000_000.0


def item(n: int, **extra: Any) -> dict[str, Any]:
    return {"source": "review", "request_id": f"req-{n}", "index": 0, "data_id": f"d{n}", "key_id": "app",
            "time": T0 - 5, "policy": "default", "model_name": "rnn", "model_version": 7,
            "probability": 0.61, "suggestion": "review", "decided_by": "model",
            "matches": [{"term": "加微信", "list": "block"}],
            "text": f"加微信领红包 {chr(0x4E00 + n)}{chr(0x5E00 + n)}号", **extra}


@pytest.fixture
def queue(open_feedback: Callable[..., Any]) -> Any:
    return review_queue_for(open_feedback())


def test_enqueue_is_once_per_decision_and_source(queue: Any) -> None:
    first = queue.enqueue([item(1), item(2)], now=T0)
    assert [added for _id, added in first] == [True, True]
    again = queue.enqueue([item(1), item(1, source="appeal", appeal_reason="not spam")], now=T0 + 1)
    assert again[0] == (first[0][0], False)
    assert again[1][1] is True and again[1][0] not in (first[0][0], first[1][0])
    assert queue.stats(now=T0 + 2)["depth"] == 3
    got = queue.get(first[0][0])
    assert got.text == item(1)["text"] and got.matches == [{"term": "加微信", "list": "block"}]
    assert got.model_version == 7 and got.policy == "default" and got.state == "queued"
    with pytest.raises(ValueError):
        queue.enqueue([item(3, source="other")])
    with pytest.raises(ValueError):
        queue.enqueue([item(3, text="")])


def test_a_probability_that_is_not_a_number_does_not_sink_the_batch(queue: Any) -> None:
    """A list decision may carry no usable probability; the batch around it is still queued."""
    answers = queue.enqueue([item(1), item(2, probability=float("nan")), item(3, probability=float("inf"))],
                            now=T0)
    assert [added for _id, added in answers] == [True, True, True]
    assert queue.get(answers[0][0]).probability == 0.61
    assert queue.get(answers[1][0]).probability is None and queue.get(answers[2][0]).probability is None


def test_a_batch_is_enqueued_at_once_and_answered_in_order(queue: Any) -> None:
    """The decision log's listener hands whole batches (one statement per batch): the answer is
    still (id, added) per item in input order, repeats inside a batch and items already queued
    are not added again, items without a request id are each new, and a batch larger than one
    insert chunk (ENQUEUE_CHUNK) is answered like a small one."""
    queue.enqueue([item(1), item(2)], now=T0)
    before = {n: queue.enqueue([item(n)], now=T0)[0][0] for n in (1, 2)}
    batch = [item(n) for n in range(3, 1203)]
    batch[10:10] = [item(1), item(5), item(2)]  # already queued / repeated later in the batch
    batch += [item(0, request_id=None, text="无编号一"), item(0, request_id=None, text="无编号二")]
    answer = queue.enqueue(batch, now=T0 + 1)
    assert len(answer) == len(batch)
    for (item_id, _added), sent in zip(answer, batch):
        got = queue.get(item_id)
        assert got is not None and got.request_id == sent["request_id"] and got.text == sent["text"]
    assert answer[10] == (before[1], False) and answer[12] == (before[2], False)
    first_5 = answer[batch.index(item(5))]
    assert first_5[1] is True and answer[11] == (first_5[0], False)
    assert [added for _id, added in answer].count(True) == 1200 + 2
    assert len({item_id for item_id, _added in answer}) == 2 + 1200 + 2  # repeats share an id
    assert queue.stats(now=T0 + 2)["depth"] == 2 + 1200 + 2
    assert queue.enqueue([], now=T0) == []


def test_the_listener_enqueues_review_decisions_and_counts_what_it_could_not(queue: Any) -> None:
    """review_listener: a batch's review decisions with text are queued in one enqueue; without
    text they are counted, not queued; a failing store (the table gone) counts them as failed
    and raises, so the decision log logs and counts the listener error."""
    from antispam.decisions import Decision
    from antispam.review import review_listener

    def decision(n: int, suggestion: str, text: str | None) -> Decision:
        return Decision(request_id=f"req-{n}", index=0, time=T0, key_id="app", policy="default", model_name="rnn",
                        model_version=7, probability=0.6, suggestion=suggestion, decided_by="model",
                        text_sha256="0" * 64, data_id=f"d{n}", text=text)

    listener = review_listener(queue)
    listener([decision(1, "review", "加微信领红包"), decision(2, "pass", None), decision(3, "review", None),
              decision(4, "block", "代开发票"), decision(5, "review", "免费领取")])
    assert (listener.enqueued, listener.without_text, listener.failed) == (2, 1, 0)
    assert queue.stats(now=T0 + 1)["by_source"] == {"review": 2, "appeal": 0}
    with queue.feedback._transaction() as conn:
        conn.execute("DROP TABLE review_items")
    with pytest.raises(Exception) as failed:  # noqa: B017 - whatever the store raises goes on to the log
        listener([decision(6, "review", "加我微信"), decision(7, "review", "加我QQ")])
    assert "review_items" in str(failed.value)
    assert (listener.enqueued, listener.without_text, listener.failed) == (2, 1, 2)


def test_take_leases_the_oldest_item_to_one_holder(queue: Any) -> None:
    queue.enqueue([item(1)], now=T0)
    queue.enqueue([item(2)], now=T0 + 1)
    a = queue.take("alice", 60, now=T0 + 10)
    b = queue.take("bob", 60, now=T0 + 10)
    assert a.request_id == "req-1" and b.request_id == "req-2"
    assert a.lease_token and a.lease_token != b.lease_token and a.lease_holder == "alice"
    assert queue.take("carol", 60, now=T0 + 10) is None  # everything is held
    stats = queue.stats(now=T0 + 10)
    assert stats["depth"] == 2 and stats["leased"] == 2 and stats["oldest_age_seconds"] == 10


def test_an_expired_lease_returns_the_item_and_the_late_verdict_is_refused(queue: Any) -> None:
    queue.enqueue([item(1)], now=T0)
    first = queue.take("alice", 30, now=T0)
    assert queue.take("bob", 30, now=T0 + 29) is None
    second = queue.take("bob", 30, now=T0 + 31)  # alice's lease ran out
    assert second.id == first.id and second.leases == 2
    with pytest.raises(LeaseLost):
        queue.decide(first.id, first.lease_token, "alice", "spam", None, normalize, now=T0 + 32)
    decided, repeated = queue.decide(second.id, second.lease_token, "bob", "pass", " fine ", normalize,
                                     now=T0 + 33)
    assert not repeated and decided.verdict == "pass" and decided.reason == "fine" and decided.reviewer == "bob"
    assert queue.stats(now=T0 + 34)["depth"] == 0


def test_an_expired_lease_nobody_took_still_decides(queue: Any) -> None:
    queue.enqueue([item(1)], now=T0)
    taken = queue.take("alice", 30, now=T0)
    decided, _ = queue.decide(taken.id, taken.lease_token, "alice", "spam", None, normalize, now=T0 + 300)
    assert decided.state == "decided"


def test_decide_is_exactly_once_and_writes_trusted_feedback(queue: Any) -> None:
    queue.enqueue([item(1)], now=T0)
    taken = queue.take("mod-1", 60, now=T0)
    decided, repeated = queue.decide(taken.id, taken.lease_token, "mod-1", "spam", None, normalize, now=T0 + 1)
    assert not repeated and decided.feedback_id
    # the same holder repeating the same verdict (a retried request) gets the stored answer
    again, repeated = queue.decide(taken.id, taken.lease_token, "mod-1", "spam", None, normalize, now=T0 + 2)
    assert repeated and again.reviewed_at == decided.reviewed_at
    with pytest.raises(AlreadyDecided):
        queue.decide(taken.id, taken.lease_token, "mod-1", "pass", None, normalize, now=T0 + 3)
    with pytest.raises(AlreadyDecided):
        queue.decide(taken.id, "someone-else", "mod-2", "spam", None, normalize, now=T0 + 3)
    rows = queue.feedback.rows()
    assert len(rows) == 1
    row = rows[0]
    assert (row.id, row.key_id, row.label, row.model_version) == (decided.feedback_id, "mod-1", 1, 7)
    assert row.normalized == normalize(item(1)["text"])


def test_bad_requests_are_refused(queue: Any) -> None:
    queue.enqueue([item(1)], now=T0)
    taken = queue.take("m", 60, now=T0)
    with pytest.raises(ReviewError):
        queue.decide(taken.id, taken.lease_token, "m", "maybe", None, normalize)
    with pytest.raises(ReviewError):
        queue.decide(taken.id, taken.lease_token, "m", "spam", "x" * 501, normalize)
    with pytest.raises(ItemNotFound):
        queue.decide(taken.id + 1000, taken.lease_token, "m", "spam", None, normalize)
    with pytest.raises(LeaseLost):  # a token is bound to its holder
        queue.decide(taken.id, taken.lease_token, "other", "spam", None, normalize)
    assert queue.get(taken.id).state == "queued"


def test_a_refused_feedback_row_decides_nothing(open_feedback: Callable[..., Any]) -> None:
    queue = review_queue_for(open_feedback(daily_count=1))
    queue.enqueue([item(1), item(2)], now=T0)
    first = queue.take("m", 60, now=T0)
    queue.decide(first.id, first.lease_token, "m", "spam", None, normalize, now=T0)
    second = queue.take("m", 60, now=T0)
    with pytest.raises(FeedbackRefused):
        queue.decide(second.id, second.lease_token, "m", "spam", None, normalize, now=T0)
    assert queue.get(second.id).state == "queued" and len(queue.feedback.rows()) == 1


def test_release_and_exclude_skip_an_item(queue: Any) -> None:
    queue.enqueue([item(1)], now=T0)
    queue.enqueue([item(2)], now=T0 + 1)
    first = queue.take("m", 60, now=T0 + 2)
    queue.release(first.id, first.lease_token, "m")
    assert queue.take("m", 60, exclude=[first.id], now=T0 + 3).request_id == "req-2"
    assert queue.take("n", 60, now=T0 + 3).id == first.id  # released: anyone may take it
    with pytest.raises(LeaseLost):
        queue.release(first.id, first.lease_token, "m")


def test_threads_never_share_an_item(open_feedback: Callable[..., Any]) -> None:
    queue = review_queue_for(open_feedback())
    queue.enqueue([item(n) for n in range(60)], now=T0)
    taken: list[int] = []
    lock = threading.Lock()

    def moderator(name: str) -> None:
        while True:
            got = queue.take(name, 300)
            if got is None:
                return
            queue.decide(got.id, got.lease_token, name, "spam" if got.id % 2 else "pass", None, normalize)
            with lock:
                taken.append(got.id)

    threads = [threading.Thread(target=moderator, args=(f"m{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(taken) == sorted(set(taken)) and len(taken) == 60
    assert queue.stats()["depth"] == 0 and len(queue.feedback.rows()) == 60


def test_depth_history_from_enqueue_and_decide_times(queue: Any) -> None:
    queue.enqueue([item(1)], now=T0 - 3 * 3600)
    queue.enqueue([item(2)], now=T0 - 2 * 3600)
    taken = queue.take("m", 60, now=T0 - 3600)
    queue.decide(taken.id, taken.lease_token, "m", "spam", None, normalize, now=T0 - 3600)
    history = queue.stats(hours=6, now=T0)["history"]
    at = {round((T0 - p["t"]) / 3600, 3): p["depth"] for p in history}
    assert at[6.0] == 0 and at[2.5] == 1 and at[1.5] == 2 and at[0.5] == 1 and at[0.0] == 1
    assert len(history) == 61


def test_appeal_outcome_becomes_a_pending_notification(queue: Any) -> None:
    queue.enqueue([item(1, source="appeal", suggestion="block", appeal_reason="it is my shop")], now=T0)
    taken = queue.take("m", 60, now=T0)
    decided, _ = queue.decide(taken.id, taken.lease_token, "m", "pass", "legit shop", normalize, notify=True,
                              now=T0 + 1)
    assert queue.find_appeal("req-1", 0).id == decided.id
    due = queue.due_notifications(now=T0 + 1)
    assert len(due) == 1 and due[0].key_id == "app"
    assert due[0].payload["reversed"] is True and due[0].payload["verdict"] == "pass"
    assert queue.due_notifications(now=T0 + 2) == []  # claimed for 30 s
    queue.notification_failed(due[0].id, "HTTP 500", T0 + 5)
    again = queue.due_notifications(now=T0 + 5)
    assert [n.id for n in again] == [due[0].id] and again[0].attempts == 1
    queue.notification_done(due[0].id, now=T0 + 6)
    assert queue.due_notifications(now=T0 + 1000) == []
    assert queue.stats(now=T0 + 7)["callbacks"] == {"pending": 0, "delivered": 1, "failed": 0}


def test_depth_history_and_backoff_helpers() -> None:
    points = depth_history([(0.0, 50.0), (10.0, None)], now=100.0, hours=100 / 3600, steps=10)
    assert [p["depth"] for p in points] == [1, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1]
    assert 0.8 <= backoff(1, 1.0) <= 1.2 and 6.4 <= backoff(4, 1.0) <= 9.6 and backoff(40, 1.0) <= 3600 * 1.2


def test_prune_deletes_old_decided_items_and_erases_texts(queue: Any) -> None:
    queue.enqueue([item(1), item(2), item(3, source="appeal", suggestion="block")], now=T0 - 100 * 86400)
    queue.enqueue([item(4)], now=T0 - 40 * 86400)
    for when in (T0 - 95 * 86400, T0 - 40 * 86400):  # items 1 and 2 decided long ago and 40 days ago
        got = queue.take("m", 60, now=when)
        queue.decide(got.id, got.lease_token, "m", "spam", None, normalize, now=when)
    appeal = queue.take("m", 60, now=T0 - 95 * 86400)  # its callback still pending: kept
    queue.decide(appeal.id, appeal.lease_token, "m", "pass", None, normalize, notify=True, now=T0 - 95 * 86400)
    assert queue.prune(90, 30, now=T0) == (1, 2)  # item 1 deleted; texts of 2 and the appeal erased
    assert queue.get(1) is None
    assert queue.get(2).text == "" and queue.get(appeal.id).text == ""
    assert queue.get(4).text == item(4)["text"]  # still queued: a person has to read it
    assert queue.prune(0, 0, now=T0) == (0, 0)  # 0: keep
