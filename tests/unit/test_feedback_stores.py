"""One set of test bodies for every feedback store (issue 23): SQLite and PostgreSQL behave alike.

``open_feedback`` (tests/helpers/stores.py) gives a SQLite file or a fresh PostgreSQL schema; the
PostgreSQL runs need the server .ci/run starts (ANTISPAM_TEST_POSTGRES_URL), else they skip.
The SQLite-only properties (WAL, kill -9, schema-1 files) stay in test_feedback.py.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable

import pytest

from antispam.feedback import FeedbackError, FeedbackRefused, FeedbackStore, is_postgres, redact
from antispam.feedback_stores import exists, open_store
from antispam.labels import PASS, SPAM
from antispam.text import normalize

Opener = Callable[..., Any]


def add(store: Any, text: str, label: int, version: int | None = 1, **refs: Any) -> dict:
    return store.add(text, normalize(text), label, version, **refs)


def test_duplicates_are_counted_and_refs_kept(open_feedback: Opener) -> None:
    store = open_feedback()
    first = add(store, "代开发票 13800138000", SPAM, request_id="r1")
    second = add(store, "代开发票 13900139000", SPAM, data_id="d2")  # same after normalization
    assert first == {"id": first["id"], "duplicate": False, "count": 1, "conflict": False}
    assert second == {"id": first["id"], "duplicate": True, "count": 2, "conflict": False}
    [row] = store.rows()
    assert (row.text, row.count, row.label, row.model_version) == ("代开发票 13800138000", 2, SPAM, 1)
    assert store.stats() == {"distinct": 1, "reports": 2, "spam": 1, "pass": 0, "conflicting_texts": 0,
                             "key_ids": 1, "bytes": len("代开发票 13800138000".encode())}


def test_conflicts_are_kept_flagged_and_left_out_of_training(open_feedback: Opener) -> None:
    store = open_feedback()
    add(store, "明天开会", PASS)
    add(store, "加微信领红包", SPAM)
    third = add(store, "明天开会", SPAM)
    assert third["conflict"] is True and third["duplicate"] is False
    assert [s.text for s in store.samples()] == ["加微信领红包"]
    assert len(store.samples(include_conflicts=True)) == 3
    [conflict] = store.conflicts()
    assert conflict.as_dict() == {"normalized": normalize("明天开会"), "text": "明天开会",
                                  "counts": {"pass": 1, "spam": 1}}
    assert store.stats()["conflicting_texts"] == 1


@pytest.mark.parametrize("label", [2, -1, True, "spam", None])
def test_bad_labels_and_empty_texts_are_refused(open_feedback: Opener, label: object) -> None:
    store = open_feedback()
    with pytest.raises(ValueError):
        store.add("文本", "文本", label, None)
    with pytest.raises(ValueError):
        store.add("   ", "  ", SPAM, None)
    assert store.rows() == []


def test_store_cap_and_daily_quota(open_feedback: Opener) -> None:
    full = open_feedback(max_rows=2)
    full.add("一", "一", SPAM, None)
    full.add("一", "一", SPAM, None)  # a repeat adds no row
    full.add("二", "二", SPAM, None)
    with pytest.raises(FeedbackRefused) as info:
        full.add("三", "三", SPAM, None)
    assert info.value.reason == "store_full"
    assert len(full.rows()) == 2
    full.close()


def test_daily_quota_per_key_and_day(open_feedback: Opener) -> None:
    quota = open_feedback(daily_count=2, daily_bytes=100)
    quota.add("一", "一", SPAM, None, key_id="k", now=86400 * 10)
    quota.add("一", "一", SPAM, None, key_id="k", now=86400 * 10 + 1)  # repeats count too
    with pytest.raises(FeedbackRefused) as info:
        quota.add("二", "二", SPAM, None, key_id="k", now=86400 * 10 + 2)
    assert info.value.reason == "quota_exceeded" and "2 verdicts" in str(info.value)
    quota.add("二", "二", SPAM, None, key_id="other", now=86400 * 10 + 2)  # per key id
    quota.add("二", "二", SPAM, None, key_id="k", now=86400 * 11)  # a new UTC day
    with pytest.raises(FeedbackRefused):
        quota.add("长" * 40, "长" * 40, SPAM, None, key_id="b", now=86400 * 11)  # 120 bytes > 100
    # A refused verdict leaves nothing behind, not even a quota charge.
    assert sorted((r.key_id, r.text) for r in quota.rows()) == [("k", "一"), ("k", "二"), ("other", "二")]
    quota.add("短", "短", SPAM, None, key_id="b", now=86400 * 11)


def test_byte_cap(open_feedback: Opener) -> None:
    sized = open_feedback(max_bytes=10)
    sized.add("一二三", "一二三", SPAM, None)  # 9 bytes
    with pytest.raises(FeedbackRefused):
        sized.add("四", "四", SPAM, None)


def test_list_delete_reassign_and_retention(open_feedback: Opener) -> None:
    store = open_feedback()
    for i, key in enumerate(["good", "bad", "bad", "good"]):
        text = f"文本{'甲乙丙丁'[i]}"
        store.add(text, text, SPAM, None, key_id=key, now=1000.0 * (i + 1))
    assert [r.key_id for r in store.rows(key_id="bad")] == ["bad", "bad"]
    assert len(store.rows(since=2500.0)) == 2 and len(store.rows(until=2500.0)) == 2
    with pytest.raises(ValueError):
        store.delete()
    with pytest.raises(ValueError):
        store.reassign("x")
    # reassign skips a row whose text and label the target key already has (UPDATE OR IGNORE)
    store.add("文本甲", "文本甲", SPAM, None, key_id="bad", now=1500.0)
    assert store.reassign("good", key_id="bad") == 2
    assert sorted(r.key_id for r in store.rows()) == ["bad", "good", "good", "good", "good"]
    assert store.delete(key_id="bad") == 1
    assert store.prune(1.0, now=86400 + 2500.0) == 2  # last seen at 1000 and 2000 s
    assert store.prune(0) == 0
    assert [r.text for r in store.rows()] == ["文本丙", "文本丁"]


def test_flip_ledger_record_approve_and_orphans(open_feedback: Opener) -> None:
    store = open_feedback()
    lena = add(store, "代开发票", PASS, key_id="lena")
    mallory = add(store, "加微信", PASS, key_id="mallory")
    flips = [{"digest": "a" * 64, "label": PASS, "corpus_label": SPAM, "key_ids": ["lena"],
              "feedback_id": lena["id"], "status": "applied"},
             {"digest": "b" * 64, "label": PASS, "corpus_label": SPAM, "key_ids": ["mallory", "x"],
              "feedback_id": mallory["id"], "status": "pending"}]
    assert store.record_flips(flips, now=5.0) == 2
    assert store.record_flips(flips) == 0  # a flip keeps its first decision
    with pytest.raises(ValueError):
        store.record_flips([{**flips[0], "digest": "c" * 64, "status": "approved"}])
    [applied, pending] = store.flips()
    assert (applied.status, applied.text, applied.decided_at) == ("applied", "代开发票", 5.0)
    assert pending.key_ids == ("mallory", "x") and store.flips(status="pending") == [pending]
    with pytest.raises(ValueError):
        store.approve_flips([pending.id], "  ")
    assert store.approve_flips([pending.id, applied.id, 999], "Wang Fang", now=7.0) == [applied.id, 999]
    [approved] = store.flips(status="approved")
    assert (approved.id, approved.approved_by, approved.approved_at) == (pending.id, "Wang Fang", 7.0)
    store.delete(key_id="mallory")
    assert [f.key_ids for f in store.flips()] == [("lena",)]


def test_contacts_can_be_masked_at_rest(open_feedback: Opener) -> None:
    store = open_feedback(mask_contacts=True)
    add(store, "加我 13800138000 领取", SPAM)
    [row] = store.rows()
    assert "13800138000" not in row.text and "13800138000" not in row.normalized


def test_threads_share_one_store(open_feedback: Opener) -> None:
    store = open_feedback(daily_count=150)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                text = f"线程{'甲乙丙丁戊己'[n]}{'子丑寅卯辰巳午未申酉'[i % 10]}{'一二三'[i // 10]}"
                store.add(text, normalize(text), SPAM, None, key_id="k")
                store.add(text, normalize(text), SPAM, None, key_id="k")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 300 adds against a quota of 150: exactly 150 stored, whatever the interleaving.
    refused = [e for e in errors if isinstance(e, FeedbackRefused)]
    assert len(refused) == len(errors) and len(refused) >= 1
    assert store.stats()["reports"] == 150


def test_an_unreachable_database_is_a_feedback_error_in_bounded_time() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pytest.importorskip("psycopg")
    store = open_store(f"postgresql://antispam:s3cret@127.0.0.1:{port}/antispam", timeout=1.0)
    assert store.location == f"postgresql://antispam:***@127.0.0.1:{port}/antispam"
    started = time.monotonic()
    with pytest.raises(FeedbackError) as info:
        store.add("代开发票", "代开发票", SPAM, None)
    assert time.monotonic() - started < 5.0
    assert "s3cret" not in str(info.value)
    store.close()


def test_targets_and_redaction(tmp_path: Any) -> None:
    assert is_postgres("postgresql://u@h/db") and is_postgres("postgres://h/db")
    assert not is_postgres(str(tmp_path / "f.db")) and not is_postgres("feedback.db")
    assert redact("postgresql://u:pw@h:5433/db?sslmode=require") == "postgresql://u:***@h:5433/db?sslmode=require"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert isinstance(open_store(str(tmp_path / "f.db")), FeedbackStore)
    assert not exists(str(tmp_path / "f.db")) and exists("postgresql://h/db") and not exists("")


def test_postgres_migrations_are_versioned_idempotent_and_concurrent() -> None:
    from tests.helpers.stores import fresh_schema, postgres_url

    psycopg = pytest.importorskip("psycopg")
    from antispam.feedback_pg import MIGRATIONS, PostgresFeedbackStore, migrate

    url, drop = fresh_schema(postgres_url())
    try:
        stores = [PostgresFeedbackStore(url) for _ in range(4)]
        errors: list[BaseException] = []

        def first_use(store: PostgresFeedbackStore, n: int) -> None:
            try:
                store.add(f"并发{n}", f"并发{n}", SPAM, None)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=first_use, args=(s, n)) for n, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with psycopg.connect(url, autocommit=True) as conn:
            assert migrate(conn) == []  # up to date: nothing applied twice
            versions = [r[0] for r in conn.execute("SELECT version FROM antispam_migrations ORDER BY version")]
            assert versions == [v for v, _n, _s in MIGRATIONS]
            conn.execute("INSERT INTO antispam_migrations (version, name) VALUES (999, 'from the future')")
        newer = PostgresFeedbackStore(url)
        with pytest.raises(FeedbackError, match="newer than this antispam knows"):
            newer.rows()
        for store in [*stores, newer]:
            store.close()
    finally:
        drop()


def test_postgres_texts_it_cannot_store_are_bad_input() -> None:
    from tests.helpers.stores import fresh_schema, postgres_url

    pytest.importorskip("psycopg")
    from antispam.feedback_pg import PostgresFeedbackStore

    url, drop = fresh_schema(postgres_url())
    store = PostgresFeedbackStore(url)
    try:
        with pytest.raises(ValueError, match="NUL"):
            store.add("代开\x00发票", "代开发票", SPAM, None)
        assert store.rows() == []
    finally:
        store.close()
        drop()
