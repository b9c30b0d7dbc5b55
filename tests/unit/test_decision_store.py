"""The decision log's table, one set of test bodies for SQLite and PostgreSQL (issue 23).

``open_feedback`` (tests/helpers/stores.py) gives a SQLite file or a fresh PostgreSQL schema; the
PostgreSQL runs need the server .ci/run starts (ANTISPAM_TEST_POSTGRES_URL), else they skip.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from antispam.decisions import Decision, text_sha256

Opener = Callable[..., Any]
DAY = 86400.0
T0 = 1_800_000_000.0


def decision(request_id: str = "r1", index: int = 0, *, suggestion: str = "block", data_id: str | None = None,
             at: float = T0, text: str | None = "代开发票 13800138000", until: float | None = T0 + 30 * DAY,
             key_id: str = "k1", **more: Any) -> Decision:
    body = text or ""
    return Decision(request_id=request_id, index=index, time=at, key_id=key_id, policy="default",
                    model_name="rnn", model_version=7, probability=0.97, suggestion=suggestion,
                    decided_by=more.pop("decided_by", "model"), text_sha256=text_sha256(body), data_id=data_id,
                    text=text, text_until=until, **more)


def test_a_batch_is_stored_and_found_by_request_and_data_id(open_feedback: Opener) -> None:
    store = open_feedback()
    batch = [decision("r1", 0, data_id="m-1", matches=(("代开", "block", 0, 2),), contacts=("mobile",)),
             decision("r1", 1, data_id="m-2", suggestion="pass", text=None, until=None),
             decision("r2", 0, data_id="m-1", suggestion="review", at=T0 + 5, capped="too_little_text")]
    assert store.add_decisions(batch) == 3
    found = store.find_decisions(request_id="r1", now=T0)
    assert sorted(found, key=lambda d: d.index) == batch[:2]  # every field round-trips
    by_data = store.find_decisions(data_id="m-1", now=T0)
    assert [(d.request_id, d.index) for d in by_data] == [("r2", 0), ("r1", 0)]  # newest first
    assert store.find_decisions(request_id="r1", data_id="m-2", now=T0) == [batch[1]]
    assert store.find_decisions(request_id="r1", key_id="someone-else", now=T0) == []
    assert store.find_decisions(request_id="nope", now=T0) == []
    assert len(store.find_decisions(data_id="m-1", limit=1, now=T0)) == 1
    with pytest.raises(ValueError):
        store.find_decisions(key_id="k1")


def test_the_text_is_only_shown_inside_its_window_even_before_the_prune(open_feedback: Opener) -> None:
    store = open_feedback()
    store.add_decisions([decision("r1", 0, until=T0 + DAY)])
    [inside] = store.find_decisions(request_id="r1", now=T0 + DAY - 1)
    [after] = store.find_decisions(request_id="r1", now=T0 + DAY + 1)
    assert inside.text == "代开发票 13800138000" and inside.text_until == T0 + DAY
    assert after.text is None and after.text_until is None
    assert after.text_sha256 == inside.text_sha256  # the hash stays for matching an appeal's text


def test_a_decision_without_a_window_is_stored_without_its_text(open_feedback: Opener) -> None:
    store = open_feedback()
    store.add_decisions([decision("r1", 0, suggestion="pass", until=None)])
    [found] = store.find_decisions(request_id="r1", now=T0)
    assert found.text is None
    assert found.text_sha256 == text_sha256("代开发票 13800138000")


def test_prune_deletes_old_rows_and_erases_texts_past_their_window(open_feedback: Opener) -> None:
    store = open_feedback()
    store.add_decisions([
        decision("old", 0, at=T0 - 100 * DAY, until=T0 - 70 * DAY),  # past the row retention
        decision("expired", 0, at=T0 - 40 * DAY, until=T0 - 10 * DAY),  # text window over
        decision("shortened", 0, at=T0 - 20 * DAY, until=T0 + 10 * DAY),  # older than today's 7 days
        decision("fresh", 0, at=T0 - DAY, until=T0 + 29 * DAY),
    ])
    assert store.prune_decisions(90, 7, now=T0) == (1, 2)
    assert store.find_decisions(request_id="old", now=T0) == []
    texts = {r: store.find_decisions(request_id=r, now=T0 - 50 * DAY)[0].text  # a clock before every window
             for r in ("expired", "shortened", "fresh")}
    assert texts == {"expired": None, "shortened": None, "fresh": "代开发票 13800138000"}
    assert store.prune_decisions(90, 7, now=T0) == (0, 0)  # nothing left to do
    assert store.prune_decisions(0, 30, now=T0 + 1000 * DAY) == (0, 1)  # 0 days: rows are kept


def test_counts_for_the_live_view(open_feedback: Opener) -> None:
    store = open_feedback()
    store.add_decisions([decision("r1", 0), decision("r1", 1, suggestion="pass", decided_by="allow_list"),
                         decision("r2", 0, suggestion="review", key_id="k2"),
                         decision("r3", 0, at=T0 - 3600)])  # before the window
    counts = store.decision_counts(T0 - 60, until=T0 + 60)
    assert counts["texts"] == 3 and counts["requests"] == 2 and counts["key_ids"] == 2
    assert counts["by_suggestion"] == {"block": 1, "pass": 1, "review": 1}
    assert counts["by_decided_by"] == {"allow_list": 1, "model": 2}


def test_a_nul_in_a_text_is_kept_as_a_replacement_character(open_feedback: Opener) -> None:
    store = open_feedback()
    text = "a\x00b 代开发票"
    store.add_decisions([decision("r1", 0, text=text, data_id="x")])
    [found] = store.find_decisions(request_id="r1", now=T0)
    assert found.text == "a\ufffdb 代开发票"
    assert found.text_sha256 == text_sha256(text)


def test_feedback_and_decisions_share_one_store(open_feedback: Opener) -> None:
    from antispam.labels import SPAM
    from antispam.text import normalize

    store = open_feedback()
    store.add_decisions([decision("r1", 0)])
    store.add("代开发票", normalize("代开发票"), SPAM, 7, request_id="r1")
    reopened = open_feedback()  # another process's view of the same store
    assert [d.request_id for d in reopened.find_decisions(request_id="r1", now=T0)] == ["r1"]
    assert reopened.stats()["spam"] == 1
