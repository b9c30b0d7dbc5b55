"""Issue 11: feedback that cannot poison the model — the store records who sent what and when,
and the retrain merge lets feedback change training only from a trusted key or N agreeing keys.

No training here: the merge is the whole decision (antispam.retrain.merge_feedback), checked
through a real FeedbackStore file.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Iterator

import pytest

from antispam import retrain
from antispam.commands.retrain import format_report
from antispam.data import Sample, Split
from antispam.feedback import ANONYMOUS, FeedbackStorage, FeedbackStore
from antispam.feedback_stores import open_store
from antispam.labels import PASS, SPAM
from antispam.privacy import text_digest
from antispam.retrain_record import FeedbackSummary, RetrainRecord, Thresholds, WordVectorsInfo
from antispam.text import normalize

SPAM_TEXTS = [f"加微信领取优惠券{i}号，代开发票，贷款秒批" for i in range(1000)]
# normalize masks digits; make each text distinct after normalization too
SPAM_TEXTS = [t.replace(f"{i}号", "号" + "甲乙丙丁戊己庚辛壬癸"[i % 10] + "子丑寅卯辰巳午未申酉"[i // 10 % 10]
                        + "金木水火土风雨雷电雪"[i // 100 % 10]) for i, t in enumerate(SPAM_TEXTS)]


def corpus() -> Split:
    return Split(train=[Sample(t, SPAM) for t in SPAM_TEXTS] + [Sample("明天一起吃饭", PASS)],
                 validation=[Sample("恭喜中奖请领取", SPAM)], test=[Sample("下午开会带电脑", PASS)])


def labels(train: list[Sample]) -> dict[str, int]:
    return {normalize(s.text): s.label for s in train}


_opened: list[FeedbackStorage] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    """Close what store_with opened (a PostgreSQL store holds a pool of connections)."""
    yield
    while _opened:
        _opened.pop().close()


def store_with(feedback_db: str, rows: list[tuple[str, int, str]]) -> FeedbackStorage:
    """A store (SQLite or PostgreSQL: the ``feedback_db`` fixture runs each test on both) holding rows."""
    store = open_store(feedback_db, synchronous="NORMAL")
    _opened.append(store)
    for text, label, key_id in rows:
        store.add(text, normalize(text), label, 1, key_id=key_id)
    return store


def test_a_thousand_anonymous_pass_labels_flip_nothing(feedback_db: str) -> None:
    split = corpus()
    assert len({normalize(t) for t in SPAM_TEXTS}) == 1000
    store = store_with(feedback_db, [(t, PASS, ANONYMOUS) for t in SPAM_TEXTS])
    rows = store.samples(include_conflicts=True)
    assert len(rows) == 1000 and {r.key_id for r in rows} == {ANONYMOUS}
    assert all(r.first_seen > 0 and r.last_seen >= r.first_seen for r in rows)  # when
    merged = retrain.merge_feedback(split, rows, policy=retrain.FeedbackPolicy())
    before, after = labels(split.train), labels(merged.train)
    flipped = sum(1 for k, v in before.items() if after.get(k) != v)
    assert flipped == 0 and len(merged.train) == len(split.train)
    assert merged.counts["used"] == 0 and merged.counts["relabelled_corpus"] == 0
    assert merged.counts["rejected_too_few_keys"] == 1000
    summary = FeedbackSummary(db="feedback.db").with_counts(merged.counts, store.stats())
    assert summary.rejected == {"too_few_keys": 1000, "conflicting": 0, "overruled_by_trusted": 0}
    record = RetrainRecord(time="t", model="cnn", model_dir="m", pid=1, dry_run=True, tolerance=0.005,
                           keep=5, thresholds=Thresholds(0.5, 0.9), word2vec=WordVectorsInfo("reuse"),
                           feedback=summary)
    report = format_report(retrain.RetrainResult(0, "publish", None, None, "why", record), "log")
    assert "1000 with too few agreeing keys" in report
    print(f"\npoisoning: rows {len(rows)}, rejected {summary.rejected}, corpus labels flipped {flipped}")


def test_many_anonymous_reports_of_one_text_count_as_one_key(feedback_db: str) -> None:
    store = store_with(feedback_db, [(SPAM_TEXTS[0], PASS, ANONYMOUS)] * 50)
    merged = retrain.merge_feedback(corpus(), store.samples(include_conflicts=True),
                                    policy=retrain.FeedbackPolicy(min_keys=2))
    assert merged.counts["used"] == 0 and merged.counts["rejected_too_few_keys"] == 1
    assert store.samples()[0].count == 50


def test_a_trusted_key_flips_a_corpus_label(feedback_db: str) -> None:
    split = corpus()
    store = store_with(feedback_db, [(SPAM_TEXTS[0], PASS, "moderator"), (SPAM_TEXTS[1], PASS, "mallory")])
    merged = retrain.merge_feedback(split, store.samples(include_conflicts=True),
                                    policy=retrain.FeedbackPolicy(trusted=frozenset({"moderator"})))
    after = labels(merged.train)
    assert after[normalize(SPAM_TEXTS[0])] == PASS
    assert after[normalize(SPAM_TEXTS[1])] == SPAM
    assert merged.counts["relabelled_corpus"] == 1 and merged.counts["trusted"] == 1
    assert merged.counts["rejected_too_few_keys"] == 1


def test_a_trusted_verdict_overrules_an_attacker_instead_of_a_conflict(feedback_db: str) -> None:
    text = "加微信领红包，稳赚不赔"
    store = store_with(feedback_db, [(text, SPAM, "moderator"), (text, PASS, "mallory"), (text, PASS, ANONYMOUS)])
    merged = retrain.merge_feedback(corpus(), store.samples(include_conflicts=True),
                                    policy=retrain.FeedbackPolicy(trusted=frozenset({"moderator"})))
    assert labels(merged.train)[normalize(text)] == SPAM
    assert merged.counts["rejected_overruled_by_trusted"] == 2 and merged.counts["conflicting"] == 0


def test_n_agreeing_keys_enter_and_fewer_do_not(feedback_db: str) -> None:
    three, two = "周末一起去爬山吧", "晚上一起看电影吧"
    store = store_with(feedback_db, [(three, PASS, k) for k in ("a", "b", ANONYMOUS)]
                       + [(two, PASS, k) for k in ("a", ANONYMOUS)] + [(SPAM_TEXTS[2], PASS, k) for k in "abc"])
    merged = retrain.merge_feedback(corpus(), store.samples(include_conflicts=True),
                                    policy=retrain.FeedbackPolicy(min_keys=3))
    after = labels(merged.train)
    assert after[normalize(three)] == PASS and normalize(two) not in after
    assert after[normalize(SPAM_TEXTS[2])] == PASS  # three keys agree: the corpus label flips
    assert merged.counts["agreed"] == 2 and merged.counts["rejected_too_few_keys"] == 2


def test_untrusted_keys_that_disagree_are_a_conflict(feedback_db: str) -> None:
    text = "周末一起去爬山吧"
    store = store_with(feedback_db, [(text, PASS, k) for k in "abc"] + [(text, SPAM, "d")])
    merged = retrain.merge_feedback(corpus(), store.samples(include_conflicts=True),
                                    policy=retrain.FeedbackPolicy(min_keys=3))
    assert merged.counts["used"] == 0 and merged.counts["rejected_conflicting"] == 4
    assert merged.conflicts[0]["counts"] == {"pass": 3, "spam": 1}
    # Issue 21: the promotion log gets a hash and a redacted excerpt, never the text.
    assert set(merged.conflicts[0]) == {"sha256", "excerpt", "counts", "keys"}
    assert merged.conflicts[0]["sha256"] == text_digest(normalize(text))


def test_schema_1_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE feedback (id INTEGER PRIMARY KEY, normalized TEXT NOT NULL,
            label INTEGER NOT NULL CHECK (label IN (0, 1)), text TEXT NOT NULL, model_version INTEGER,
            first_seen REAL NOT NULL, last_seen REAL NOT NULL, count INTEGER NOT NULL DEFAULT 1,
            UNIQUE (normalized, label));
        INSERT INTO feedback VALUES (1, 'abc', 0, '代开发票', 3, 100.0, 200.0, 7);
        PRAGMA user_version=1;
    """)
    conn.close()
    store = FeedbackStore(path)
    [row] = store.samples()
    assert (row.key_id, row.count, row.model_version, row.first_seen) == (ANONYMOUS, 7, 3, 100.0)
    store.add("代开发票", "abc", SPAM, 3, key_id="k1")  # the same text from another key: a new row
    assert sorted((r.key_id, r.count) for r in store.samples()) == [(ANONYMOUS, 7), ("k1", 1)]
    assert store.stats()["bytes"] == 2 * len("代开发票".encode())
    store.close()
    assert FeedbackStore(path).integrity_check() == "ok"
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2


# -- issue 21: labelers, and caps on corpus label flips ------------------------------------------


def test_admin_alone_is_not_trusted_but_a_labeler_is(tmp_path: Path, feedback_db: str) -> None:
    from antispam.keys import add_key

    keys = tmp_path / "keys.tsv"
    add_key(keys, "ops", ["admin"], 10)
    add_key(keys, "lena", ["labeler"], 10)
    add_key(keys, "both", ["admin", "labeler"], 10)
    policy = retrain.RetrainOptions(model="cnn", keys_file=str(keys)).feedback_policy()
    assert policy.trusted == frozenset({"lena", "both"})
    store = store_with(feedback_db, [(SPAM_TEXTS[0], PASS, "ops"), (SPAM_TEXTS[1], PASS, "lena")])
    merged = retrain.merge_feedback(corpus(), store.samples(include_conflicts=True), policy=policy)
    after = labels(merged.train)
    assert after[normalize(SPAM_TEXTS[0])] == SPAM  # the admin's single verdict flips nothing
    assert after[normalize(SPAM_TEXTS[1])] == PASS
    assert merged.counts["rejected_too_few_keys"] == 1 and merged.counts["trusted"] == 1


def ledger_of(store: FeedbackStorage, now: float | None = None) -> retrain.FlipLedger:
    return retrain.FlipLedger.from_flips(store.flips(), now)


def test_flips_over_the_caps_wait_for_approval_and_then_apply(feedback_db: str) -> None:
    from argparse import Namespace

    from antispam.commands.feedback import approve

    split = corpus()
    # lena flips 5 corpus labels, mia 2 (both trusted labelers); caps: 4 a night, 3 per key.
    rows = [(SPAM_TEXTS[i], PASS, "lena") for i in range(5)] + [(SPAM_TEXTS[i], PASS, "mia") for i in (10, 11)]
    store = store_with(feedback_db, rows)
    policy = retrain.FeedbackPolicy(trusted=frozenset({"lena", "mia"}), max_flips=4, max_flips_per_key=3)
    merged = retrain.merge_feedback(split, store.samples(include_conflicts=True), policy=policy,
                                    ledger=ledger_of(store))
    after = labels(merged.train)
    flipped = [i for i in (0, 1, 2, 3, 4, 10, 11) if after[normalize(SPAM_TEXTS[i])] == PASS]
    assert flipped == [0, 1, 2, 10]  # lena's first 3 (per key), then mia's first (4 a night)
    assert merged.counts["relabelled_corpus"] == 4 and merged.counts["held_for_approval"] == 3
    assert len(merged.train) == len(split.train)  # held texts keep their corpus label, not dropped
    assert store.record_flips(merged.flips) == 7

    # The same night again (another model's run): nothing new applies, nothing is counted twice.
    again = retrain.merge_feedback(split, store.samples(include_conflicts=True), policy=policy,
                                   ledger=ledger_of(store))
    assert again.counts["relabelled_corpus"] == 4 and again.counts["held_for_approval"] == 3
    assert again.flips == []

    pending = store.flips(status="pending")
    assert [(f.key_ids, f.text) for f in pending] == [(("lena",), SPAM_TEXTS[3]), (("lena",), SPAM_TEXTS[4]),
                                                      (("mia",), SPAM_TEXTS[11])]
    assert all(f.corpus_label == SPAM and f.label == PASS and len(f.digest) == 64 for f in pending)
    args = Namespace(ids=[pending[0].id, 999], by="Wang Fang", show_all=False)
    assert approve(store, args) == 1  # 999 is not pending: said, exit 1; the other is approved
    [approved] = store.flips(status="approved")
    assert (approved.id, approved.approved_by) == (pending[0].id, "Wang Fang") and approved.approved_at

    # Approved flips apply without counting; pending ones keep waiting, even on a new day.
    tomorrow = retrain.merge_feedback(split, store.samples(include_conflicts=True), policy=policy,
                                      ledger=ledger_of(store, now=time.time() + 86400))
    after = labels(tomorrow.train)
    assert after[normalize(SPAM_TEXTS[3])] == PASS and after[normalize(SPAM_TEXTS[4])] == SPAM
    assert tomorrow.counts["relabelled_corpus"] == 5 and tomorrow.counts["held_for_approval"] == 2


def test_agreeing_keys_are_each_charged_and_zero_means_no_cap(feedback_db: str) -> None:
    rows = [(SPAM_TEXTS[i], PASS, k) for i in range(3) for k in "abc"]
    store = store_with(feedback_db, rows)
    capped = retrain.merge_feedback(corpus(), store.samples(include_conflicts=True),
                                    policy=retrain.FeedbackPolicy(min_keys=3, max_flips=0, max_flips_per_key=2))
    assert capped.counts["relabelled_corpus"] == 2 and capped.counts["held_for_approval"] == 1
    assert capped.flips[0]["key_ids"] == ["a", "b", "c"]
    free = retrain.merge_feedback(corpus(), store.samples(include_conflicts=True),
                                  policy=retrain.FeedbackPolicy(min_keys=3, max_flips=0, max_flips_per_key=0))
    assert free.counts["relabelled_corpus"] == 3 and free.counts["held_for_approval"] == 0


def test_deleting_the_feedback_drops_its_ledger_rows(feedback_db: str) -> None:
    store = store_with(feedback_db, [(SPAM_TEXTS[0], PASS, "lena"), (SPAM_TEXTS[1], PASS, "mallory")])
    merged = retrain.merge_feedback(corpus(), store.samples(include_conflicts=True),
                                    policy=retrain.FeedbackPolicy(trusted=frozenset({"lena", "mallory"}),
                                                                  max_flips_per_key=0, max_flips=1))
    store.record_flips(merged.flips)
    assert [f.status for f in store.flips()] == ["applied", "pending"]
    store.delete(key_id="mallory")
    assert [f.key_ids for f in store.flips()] == [("lena",)]


def test_feedback_approve_command_lists_and_approves(feedback_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    from antispam.cli import main

    store = store_with(feedback_db, [(SPAM_TEXTS[i], PASS, "lena") for i in range(2)])
    merged = retrain.merge_feedback(corpus(), store.samples(include_conflicts=True),
                                    policy=retrain.FeedbackPolicy(trusted=frozenset({"lena"}), max_flips=1))
    store.record_flips(merged.flips)
    store.close()
    db = feedback_db
    assert main(["feedback", "--feedback-db", db, "approve"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1 and listed[0].split("\t")[1:4] == ["pending", "spam -> pass", "lena"]
    flip_id = listed[0].split("\t")[0]
    assert main(["feedback", "--feedback-db", db, "approve", flip_id, "--by", "li.na"]) == 0
    assert "approved 1 label flips" in capsys.readouterr().out
    assert main(["feedback", "--feedback-db", db, "approve"]) == 0
    assert capsys.readouterr().out.strip() == "no label flips are waiting for approval"
    assert main(["feedback", "--feedback-db", db, "approve", "--all"]) == 0
    shown = capsys.readouterr().out
    assert "\tapproved\t" in shown and "li.na" in shown and "\tapplied\t" in shown
