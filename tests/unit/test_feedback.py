"""The feedback store: de-duplication, conflicts, threads, several processes, and kill -9."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
import tornado.testing

from antispam.feedback import FeedbackError, FeedbackStore, default_path
from antispam.labels import PASS, SPAM
from antispam.text import normalize


def add(store: FeedbackStore, text: str, label: int, version: int | None = 1) -> dict:
    return store.add(text, normalize(text), label, version)


def test_nothing_is_created_until_first_use(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "feedback.db"
    store = FeedbackStore(path)
    assert not path.exists()
    add(store, "代开发票", SPAM)
    assert path.is_file()
    store.close()


def test_wal_mode_and_synchronous_are_set(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.db")
    add(store, "代开发票", SPAM)
    conn = store._connect()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    normal = FeedbackStore(tmp_path / "g.db", synchronous="normal")
    add(normal, "代开发票", SPAM)
    assert normal._connect().execute("PRAGMA synchronous").fetchone()[0] == 1
    normal.close()


def test_exact_duplicates_are_counted_not_stored_twice(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.db")
    first = add(store, "代开发票 13800138000", SPAM)
    # Same text after normalization (digits are masked, width folded): the same key.
    second = add(store, "代开发票 13900139000", SPAM)
    third = add(store, "代开发票　１３９００１３９０００", SPAM)
    assert first == {"id": first["id"], "duplicate": False, "count": 1, "conflict": False}
    assert second["id"] == first["id"] and second["duplicate"] and second["count"] == 2
    assert third["count"] == 3
    samples = store.samples()
    assert len(samples) == 1
    assert samples[0].count == 3
    assert samples[0].text == "代开发票 13800138000"  # the first raw text is kept
    assert samples[0].normalized == normalize("代开发票 13800138000")
    assert samples[0].model_version == 1


def test_conflicting_label_is_kept_flagged_and_left_out_of_training(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.db")
    add(store, "明天开会", PASS)
    add(store, "明天开会", PASS)
    result = add(store, "明天开会", SPAM, version=2)
    assert result["conflict"] and not result["duplicate"]
    add(store, "加微信领红包", SPAM)
    assert [s.normalized for s in store.samples()] == [normalize("加微信领红包")]
    assert len(store.samples(include_conflicts=True)) == 3
    conflicts = store.conflicts()
    assert len(conflicts) == 1
    assert conflicts[0].normalized == normalize("明天开会")
    assert conflicts[0].counts == {"pass": 2, "spam": 1}
    stats = store.stats()
    assert stats == {"distinct": 3, "reports": 4, "spam": 2, "pass": 1, "conflicting_texts": 1,
                     "key_ids": 1, "bytes": stats["bytes"]}


@pytest.mark.parametrize("label", [2, -1, True, "spam"])
def test_bad_labels_are_refused(tmp_path: Path, label: object) -> None:
    store = FeedbackStore(tmp_path / "f.db")
    with pytest.raises(ValueError):
        store.add("x", "x", label, None)  # type: ignore[arg-type]


def test_empty_normalized_text_is_refused(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.db")
    with pytest.raises(ValueError):
        store.add("!!!", normalize("!!!"), SPAM, None)


def test_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = FeedbackStore(blocker / "f.db")
    with pytest.raises(FeedbackError, match="feedback store"):
        add(store, "代开发票", SPAM)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(FeedbackError, match="feedback store"):
        add(FeedbackStore(path), "代开发票", SPAM)


def test_default_path_reads_the_environment() -> None:
    assert default_path({"ANTISPAM_FEEDBACK_DB": "/x/f.db"}) == "/x/f.db"
    assert default_path({}, fallback="y.db") == "y.db"


def test_threads_share_one_store(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.db")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                # Characters that are already simplified: normalization keeps them all distinct.
                add(store, f"消息 {'甲乙丙丁戊己庚辛'[n]}{'春夏秋冬东南西北上下左右前后天地日月山水花草鸟鱼云'[i]}",
                    SPAM if i % 2 else PASS)
                add(store, "重复 的 消息", SPAM)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    samples = store.samples()
    assert len(samples) == 8 * 25 + 1
    assert next(s for s in samples if s.normalized == normalize("重复 的 消息")).count == 8 * 25


WRITER = textwrap.dedent("""
    import sys
    from antispam.feedback import FeedbackStore
    store = FeedbackStore(sys.argv[1])
    i = 0
    while True:
        text = "消息" + "".join(chr(0x4e00 + int(d)) for d in str(i))
        store.add(text, text, i % 2, 7)
        # Printed only after add() returned: the parent counts these as committed.
        print(text, flush=True)
        i += 1
""")


def _run_writer(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8")


def test_survives_kill_9_mid_write(tmp_path: Path) -> None:
    """SIGKILL a process that writes in a loop; the file is sound and every acknowledged row is there."""
    path = tmp_path / "f.db"
    for _round in range(3):  # kill at a few different moments
        proc = _run_writer(path)
        acknowledged: list[str] = []
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while len(acknowledged) < 40 + 20 * _round and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged.append(line.rstrip("\n"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        # Lines already written to the pipe before the kill were also acknowledged.
        acknowledged.extend(line.rstrip("\n") for line in proc.stdout.read().splitlines())
        assert len(acknowledged) >= 40, proc.stderr.read() if proc.stderr else ""

        conn = sqlite3.connect(str(path))
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = {row[0] for row in conn.execute("SELECT normalized FROM feedback")}
        finally:
            conn.close()
        missing = [t for t in acknowledged if t not in stored]
        assert not missing, f"{len(missing)} acknowledged rows lost, e.g. {missing[:3]}"
    # The store still works after the kills.
    store = FeedbackStore(path)
    assert store.integrity_check() == "ok"
    assert store.add("最后", "最后", SPAM, None)["count"] >= 1


def _open_and_add(path: str, barrier: "multiprocessing.synchronize.Barrier", out: "multiprocessing.Queue[str]") -> None:
    barrier.wait()
    try:
        FeedbackStore(path).add("同时", "同时", SPAM, None)
        out.put("ok")
    except Exception as exc:  # reported to the parent, which asserts on it
        out.put(repr(exc))


def test_processes_creating_the_store_at_once_all_succeed(tmp_path: Path) -> None:
    # Regression: the WAL switch on a brand-new file answered SQLITE_BUSY without waiting, so a
    # worker that raced another one failed its first write (seen in CI, ~6% of opens).
    ctx = multiprocessing.get_context("spawn")
    results: list[str] = []
    for round_ in range(12):
        path = str(tmp_path / f"race{round_}.db")
        barrier, out = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_and_add, args=(path, barrier, out)) for _ in range(4)]
        for proc in procs:
            proc.start()
        results += [out.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert FeedbackStore(path).samples()[0].count == 4
    assert results == ["ok"] * len(results), [r for r in results if r != "ok"][:3]


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    procs = [_run_writer(path) for _ in range(2)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            for _ in range(30):
                assert proc.stdout.readline(), proc.stderr.read() if proc.stderr else ""
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
    store = FeedbackStore(path)
    assert store.integrity_check() == "ok"
    # Both writers produce the same texts with the same labels: counted, never stored twice.
    assert all(s.count in (1, 2) for s in store.samples())
    assert len({s.normalized for s in store.samples()}) == len(store.samples())


# ---------------------------------------------------------------------------------------------
# Through the HTTP API: POST /feedback lands in a real store


class PostFeedbackTest(tornado.testing.AsyncHTTPTestCase):
    """The app (fake model backend) writing into a real store, read back by a new connection."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.store = FeedbackStore(self.tmp / "feedback.db")
        super().setUp()

    def get_app(self):
        from antispam.app import make_app
        from antispam.config import ServeConfig
        from antispam.testing.fakes import FakeBackend

        return make_app(ServeConfig(), FakeBackend(version=3), feedback_store=self.store)

    def post(self, body: dict) -> tuple[int, dict]:
        response = self.fetch("/feedback", method="POST", body=json.dumps(body, ensure_ascii=False),
                              headers={"Content-Type": "application/json"})
        payload = json.loads(response.body)
        assert payload.pop("request_id") == response.headers["X-Request-Id"]  # every answer has one
        return response.code, payload

    def test_duplicates_conflicts_and_bad_labels(self) -> None:
        first = self.post({"text": "代开发票，电话13800138000", "label": "spam"})
        again = self.post({"text": "代开发票。电话13912345678", "label": 0})
        other = self.post({"text": "代开发票，电话13800138000", "label": "pass"})
        bad = self.post({"text": "代开发票", "label": "ham"})
        assert first == (202, {"data": {"id": 1, "duplicate": False, "count": 1, "conflict": False}})
        assert again == (202, {"data": {"id": 1, "duplicate": True, "count": 2, "conflict": False}})
        assert other[0] == 202 and other[1]["data"]["conflict"] is True
        assert bad[0] == 400 and bad[1]["error"]["code"] == "invalid_label"
        self.store.close()
        reopened = FeedbackStore(self.tmp / "feedback.db")
        assert reopened.integrity_check() == "ok"
        assert [(s.label, s.count, s.model_version) for s in reopened.samples(include_conflicts=True)] == [
            (SPAM, 2, 3), (PASS, 1, 3)]
        assert [c.counts for c in reopened.conflicts()] == [{"spam": 2, "pass": 1}]
        reopened.close()


def test_contacts_can_be_masked_at_rest(tmp_path: Path) -> None:
    """Issue 21: with mask_contacts the phone numbers and ids of a verdict never reach the disk;
    the normalized text (what training reads) is the masked text's."""
    text = "加微信：abc12345 或电话 13800138000 领取"
    store = FeedbackStore(tmp_path / "feedback.db", mask_contacts=True)
    store.add(text, normalize(text), SPAM, 1)
    [row] = store.rows()
    assert row.text == "加微信：xxx00000 或电话 00000000000 领取"
    assert row.normalized == normalize(row.text)
    store.close()
    raw = (tmp_path / "feedback.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("feedback.db-*"))
    assert b"abc12345" not in raw and b"13800138000" not in raw
    plain = FeedbackStore(tmp_path / "plain.db")
    plain.add(text, normalize(text), SPAM, 1)
    assert plain.rows()[0].text == text  # off by default
    plain.close()
