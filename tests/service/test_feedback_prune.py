"""``antispam feedback prune``: the retention on its own schedule (issue 21,
docs/operations.md#privacy), with a real SQLite store and promotion logs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from antispam.cli import main
from antispam.feedback import FeedbackStore
from antispam.labels import PASS, SPAM
from antispam.lock import FileLock
from antispam.retrain import LOCK_FILE, LOG_FILE
from antispam.text import normalize

pytestmark = pytest.mark.service

OLD_LINE = {"time": "2025-01-01T03:00:00+00:00", "decision": "reject", "conflict_count": 1,
            "conflicts": [{"normalized": "周末爬山 电话xxxxxxxxxxx", "text": "周末爬山，电话13800138000",
                           "counts": {"spam": 1, "pass": 1}, "keys": {"0": 1, "1": 1}}]}


def setup(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "feedback.db"
    store = FeedbackStore(db)
    day = 86400.0
    store.add("很久以前的话", normalize("很久以前的话"), SPAM, 1, now=time.time() - 400 * day)
    store.add("昨天的话", normalize("昨天的话"), PASS, 1, now=time.time() - day)
    store.close()
    models = tmp_path / "models"
    for name in ("cnn", "rnn"):
        (models / name).mkdir(parents=True)
        (models / name / LOG_FILE).write_text(json.dumps(OLD_LINE, ensure_ascii=False) + "\n", encoding="utf-8")
    return db, models


def test_prune_deletes_old_rows_and_redacts_every_promotion_log(tmp_path: Path, capsys) -> None:
    db, models = setup(tmp_path)
    assert main(["feedback", "--feedback-db", str(db), "prune", "--model-base", str(models),
                 "--feedback-retention-days", "365"]) == 0
    out = capsys.readouterr().out
    assert "deleted 1 rows" in out and out.count("1 lines redacted") == 2, out
    store = FeedbackStore(db)
    assert [row.text for row in store.rows()] == ["昨天的话"]
    store.close()
    for name in ("cnn", "rnn"):
        text = (models / name / LOG_FILE).read_text(encoding="utf-8")
        assert "13800138000" not in text and "xxxxxxxxxxx" not in text
        [conflict] = json.loads(text)["conflicts"]
        assert set(conflict) == {"sha256", "excerpt", "counts", "keys"}
        assert conflict["excerpt"] == "周末爬山，电话000000000…"
    # Run again: nothing left to do.
    assert main(["feedback", "--feedback-db", str(db), "prune", "--model-base", str(models)]) == 0
    assert "deleted 0 rows" in capsys.readouterr().out


def test_a_log_whose_folder_a_retrain_holds_is_left_for_later(tmp_path: Path, capsys) -> None:
    db, models = setup(tmp_path)
    with FileLock(models / "cnn" / LOCK_FILE, what="retrain of cnn"):
        code = main(["feedback", "--feedback-db", str(db), "prune", "--model-base", str(models), "--model", "cnn"])
    assert code == 4
    assert "not redacted now" in capsys.readouterr().err
    assert "13800138000" in (models / "cnn" / LOG_FILE).read_text(encoding="utf-8")


def test_prune_without_a_store_or_logs_is_not_an_error(tmp_path: Path, capsys) -> None:
    assert main(["feedback", "--feedback-db", str(tmp_path / "none.db"), "prune",
                 "--model-base", str(tmp_path / "models")]) == 0
    assert "nothing to delete" in capsys.readouterr().out
    assert main(["feedback", "--feedback-db", str(tmp_path / "none.db"), "prune",
                 "--feedback-retention-days", "-1"]) == 2


def test_prune_is_the_decision_logs_retention_too(feedback_db: str, tmp_path: Path, capsys) -> None:
    """Issue 23: on SQLite and PostgreSQL alike, old decisions go and old texts are erased."""
    from antispam.decisions import Decision, text_sha256
    from antispam.feedback_stores import open_store

    now, day = time.time(), 86400.0

    def decision(request_id: str, age_days: float, window_days: float) -> Decision:
        at = now - age_days * day
        return Decision(request_id=request_id, index=0, time=at, key_id="k", policy="default", model_name="rnn",
                        model_version=1, probability=0.99, suggestion="block", decided_by="model",
                        text_sha256=text_sha256("代开发票"), text="代开发票", text_until=at + window_days * day)

    store = open_store(feedback_db)
    store.add_decisions([decision("ancient", 100, 30), decision("month", 20, 30), decision("today", 0, 30)])
    store.close()
    assert main(["feedback", "--feedback-db", feedback_db, "prune", "--model-base", str(tmp_path / "none"),
                 "--decision-retention-days", "90", "--decision-text-days", "7"]) == 0
    assert "deleted 1 decisions (older than 90 days) and erased 1 decision texts" in capsys.readouterr().out
    store = open_store(feedback_db)
    try:
        assert store.find_decisions(request_id="ancient") == []
        assert store.find_decisions(request_id="month")[0].text is None
        assert store.find_decisions(request_id="today")[0].text == "代开发票"
    finally:
        store.close()
