"""The nightly retrain job: feedback merge, gate, log, options, lock, and real runs on a tiny corpus.

Pruning and leftover cleanup are tested with them in tests/unit/test_versions.py.

The real runs use tiny settings (a 60-message corpus, 1-2 epochs, small word2vec) so each takes
seconds; the first one (word2vec + classifier, paying TensorLayer's import) is shared by the
tests through a module fixture and copied per test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from antispam import everyday, retrain, retrain_record, versions
from antispam.commands.retrain import format_report
from antispam.data import Sample, Split, load_split
from antispam.feedback import FeedbackStore
from antispam.labels import PASS, SPAM
from antispam.lock import FileLock, LockBusy
from antispam.network import decision
from antispam.text import normalize
from tests.helpers.corpus import NUMBERS, TINY_PASS, TINY_SPAM, write_corpus

ROOT = Path(__file__).resolve().parents[2]


def fb(text: str, label: int, count: int = 1, key_id: str = "moderator") -> SimpleNamespace:
    return SimpleNamespace(text=text, label=label, count=count, key_id=key_id)


TRUST_MODERATOR = retrain.FeedbackPolicy(trusted=frozenset({"moderator"}))
NO_REJECTIONS = {"rejected_too_few_keys": 0, "rejected_conflicting": 0, "rejected_overruled_by_trusted": 0}


def tiny_split() -> Split:
    return Split(
        train=[Sample("代开发票，联系我", SPAM), Sample("明天一起吃饭", PASS), Sample("低息贷款", SPAM)],
        validation=[Sample("恭喜中奖请领取", SPAM)],
        test=[Sample("下午开会带电脑", PASS)],
    )


# ---------------------------------------------------------------------------------------------
# merge_feedback


def test_feedback_joins_training_only_and_never_a_held_out_text() -> None:
    split = tiny_split()
    merged = retrain.merge_feedback(split, [
        fb("下午开会带电脑！", SPAM),         # the test text (after normalization): left out
        fb("恭喜中奖请领取。", SPAM),         # the validation text: left out
        fb("加微信领红包", SPAM, count=4),    # new: added
        fb("明天一起吃饭", SPAM),             # a training text with the other label: relabelled
        fb("低息贷款", SPAM),                 # already in the corpus with this label
        fb("！！！", PASS),                   # nothing left after normalization
    ], policy=TRUST_MODERATOR)
    assert merged.counts == {"distinct": 6, "reports": 9, "used": 2, "added": 1, "relabelled_corpus": 1,
                             "already_in_corpus": 1, "held_out": 2, "empty": 1, "conflicting": 0,
                             "trusted": 5, "agreed": 0, "min_keys": 3, "held_for_approval": 0, **NO_REJECTIONS}
    by_text = {normalize(s.text): s.label for s in merged.train}
    assert by_text[normalize("加微信领红包")] == SPAM
    assert by_text[normalize("明天一起吃饭")] == SPAM  # the moderator's verdict replaced the corpus'
    assert len(merged.train) == len(split.train) + 1
    held_out = {normalize(s.text) for s in split.validation + split.test}
    assert not held_out & set(by_text)


def test_feedback_conflicts_are_reported_not_trained() -> None:
    store_conflict = SimpleNamespace(as_dict=lambda: {"normalized": "x", "text": "x", "counts": {"spam": 1, "pass": 2}})
    merged = retrain.merge_feedback(tiny_split(), [
        # Two rows the store kept apart but today's normalizer merges, with both labels.
        fb("发票 13800138000", SPAM), fb("发票 13900139000", PASS),
    ], [store_conflict], TRUST_MODERATOR)
    assert merged.counts["conflicting"] == 2
    assert merged.counts["used"] == 0
    assert len(merged.conflicts) == 2
    # Issue 21: no text in the log, whether the conflict came from the store or the merge.
    assert all(set(c) >= {"sha256", "excerpt"} and not {"text", "normalized"} & set(c) for c in merged.conflicts)
    assert "13800138000" not in str(merged.conflicts) and "13900139000" not in str(merged.conflicts)
    assert len(merged.train) == 3


# ---------------------------------------------------------------------------------------------
# gate


# The gate's rules (figures, tolerances, best ever, trusted verdicts) are unit-tested in
# tests/unit/test_decision.py; the runs below go through it end to end.


# ---------------------------------------------------------------------------------------------
# log, record, options


def test_log_lines_from_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "log" / "promotion.jsonl"
    code = textwrap.dedent(f"""
        import sys
        from antispam.retrain_record import append_log
        for i in range(40):
            append_log({str(path)!r}, {{"writer": int(sys.argv[1]), "i": i, "pad": "中" * 3000}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in range(4)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    records = retrain_record.read_log(path)
    assert len(records) == 160
    assert sorted((r["writer"], r["i"]) for r in records) == [(w, i) for w in range(4) for i in range(40)]


def test_the_record_keeps_the_keys_readers_know() -> None:
    """promotion.jsonl is read by people and tools: keys are added, never renamed or removed."""
    record = retrain_record.RetrainRecord(
        time="t", model="cnn", model_dir="m", pid=1, dry_run=False, tolerance=0.005, keep=5,
        thresholds=retrain_record.Thresholds(review=0.5, block=0.9),
        word2vec=retrain_record.WordVectorsInfo(mode="reuse"))
    line = record.to_dict()
    assert set(line) >= {"time", "model", "model_dir", "pid", "dry_run", "tolerance", "keep", "word2vec",
                         "decision", "exit_code", "reason", "version", "serving_version", "data", "feedback",
                         "conflicts", "conflict_count", "training", "scores", "pruned", "seconds"}
    assert line["thresholds"] == {"review": 0.5, "block": 0.9}
    assert line["scores"] == {"new": None, "old": None}
    summary = retrain_record.FeedbackSummary(db="f.db").with_counts({"added": 2, "held_out": 1}, {"distinct": 4})
    assert (summary.added, summary.held_out, summary.store) == (2, 1, {"distinct": 4})
    with pytest.raises(ValueError, match="unknown feedback counts"):
        summary.with_counts({"renamed": 1}, {})


@pytest.mark.parametrize("change,message", [
    ({"keep": 0}, "--keep"), ({"tolerance": float("nan")}, "--tolerance"),
    ({"tolerance": 200.0}, "--tolerance"), ({"model": "svm"}, "--model"), ({"word2vec": "maybe"}, "--word2vec"),
    ({"review_threshold": 0.95, "block_threshold": 0.9}, "--review-threshold"),
    ({"block_threshold": 1.5}, "--block-threshold"),
    ({"review_threshold": float("nan")}, "thresholds"),
])
def test_bad_options_are_refused(change: dict, message: str) -> None:
    options = retrain.RetrainOptions(model="cnn")
    for key, value in change.items():
        setattr(options, key, value)
    with pytest.raises(retrain.RetrainError, match=message):
        options.validate()


def test_every_kind_antispam_train_knows_is_accepted() -> None:
    from antispam.cli import build_parser
    from antispam.network.models import KINDS

    assert "mlp" in KINDS and retrain.MODELS == tuple(KINDS)
    for kind in KINDS:
        retrain.RetrainOptions(model=kind).validate()
        assert build_parser().parse_args(["retrain", "--model", kind]).model == kind


def test_a_second_run_is_refused_while_one_holds_the_lock(tmp_path: Path, tiny_corpus: Path) -> None:
    options = retrain.RetrainOptions(model="cnn", data=str(tiny_corpus), model_base=str(tmp_path / "models"))
    with FileLock(options.model_dir / retrain.LOCK_FILE):
        with pytest.raises(LockBusy, match="another retrain of cnn") as caught:
            retrain.run(options)
    assert caught.value.exit_code == retrain.EXIT_BUSY == 4
    [line] = retrain_record.read_log(options.log_file)
    assert line["decision"] == "busy" and line["exit_code"] == 4
    assert line["thresholds"] == {"review": None, "block": None}  # unset: each version's points
    assert versions.list_versions(options.model_dir) == []


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "antispam", "retrain", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_cli_exits_4_with_a_message_when_busy(tmp_path: Path, tiny_corpus: Path) -> None:
    model_base = tmp_path / "models"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from antispam.lock import FileLock
        with FileLock({str(model_base / 'cnn' / retrain.LOCK_FILE)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = run_cli("--model", "cnn", "--data", str(tiny_corpus), "--model-base", str(model_base),
                         "--no-feedback", timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 4, result.stderr
    assert "another retrain of cnn" in result.stderr and f"pid {holder.pid}" in result.stderr


def test_cli_refuses_bad_flags_and_a_missing_feedback_db(tmp_path: Path, tiny_corpus: Path) -> None:
    result = run_cli("--model", "cnn", "--keep", "0", "--model-base", str(tmp_path))
    assert result.returncode == 2 and "--keep must be at least 1" in result.stderr
    result = run_cli("--model", "cnn", "--data", str(tiny_corpus), "--model-base", str(tmp_path),
                     "--feedback-db", str(tmp_path / "nope.db"))
    assert result.returncode == 2 and "no feedback store at" in result.stderr
    assert not (tmp_path / "nope.db").exists()
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--model", "--data", "--model-base", "--feedback-db", "--word2vec", "--tolerance",
                 "--keep", "--dry-run", "--log", "--review-threshold", "--block-threshold", "mlp"):
        assert flag in result.stdout
    result = run_cli("--model", "cnn", "--review-threshold", "0.95", "--block-threshold", "0.9",
                     "--model-base", str(tmp_path))
    assert result.returncode == 2 and "must not be above block_threshold" in result.stderr
    assert "--review-threshold, --block-threshold" in result.stderr
    result = run_cli("--model", "cnn", "--model-base", str(tmp_path), env={"ANTISPAM_BLOCK_THRESHOLD": "high"})
    assert result.returncode == 2 and "ANTISPAM_BLOCK_THRESHOLD='high'" in result.stderr


def test_cli_options_read_the_environment(tmp_path: Path) -> None:
    from antispam.cli import build_parser
    from antispam.commands.retrain import options_from_args

    args = build_parser().parse_args(["retrain", "--model", "rnn"])
    env = {"ANTISPAM_MODEL_BASE": "/m", "ANTISPAM_FEEDBACK_DB": "/f/feedback.db", "ANTISPAM_DATA_DIR": "/d",
           "ANTISPAM_W2V_EPOCHS": "2", "ANTISPAM_REVIEW_THRESHOLD": "0.4", "ANTISPAM_BLOCK_THRESHOLD": "0.8",
           "ANTISPAM_PORT": "not a port"}  # serve's business, not retrain's
    options = options_from_args(args, env)
    assert (options.model, options.model_base, options.feedback_db, options.data_dir) == (
        "rnn", "/m", "/f/feedback.db", "/d")
    assert not options.feedback_required
    assert (options.review_threshold, options.block_threshold) == (0.4, 0.8)
    assert options.word2vec_settings.epochs == 2
    assert options.log_file == Path("/m/rnn/promotion.jsonl")
    args = build_parser().parse_args(["retrain", "--model", "cnn", "--feedback-db", "x.db", "--epochs", "3"])
    options = options_from_args(args, {})
    assert options.feedback_required and options.classifier.epochs == 3
    args = build_parser().parse_args(["retrain", "--model", "cnn", "--no-feedback"])
    assert options_from_args(args, env).feedback_db is None
    defaults = options_from_args(build_parser().parse_args(["retrain", "--model", "cnn"]), {})
    assert (defaults.model_base, defaults.feedback_db, defaults.review_threshold, defaults.block_threshold) == (
        "models", "feedback.db", None, None)  # ServeConfig's: unset, each version's operating points
    args = build_parser().parse_args(["retrain", "--model", "mlp", "--review-threshold", "0.6",
                                      "--model-base", "/flag"])
    options = options_from_args(args, env)
    assert (options.model, options.model_base, options.review_threshold, options.block_threshold) == (
        "mlp", "/flag", 0.6, 0.8)
    assert options_from_args(args, {"ANTISPAM_FEEDBACK_DB": ""}).feedback_db is None  # disabled, as in serve
    # Issue 11: whose feedback counts, read as serve reads its settings (flag > env > default).
    assert (defaults.feedback_min_keys, defaults.feedback_trusted_keys, defaults.keys_file,
            defaults.feedback_retention_days) == (3, (), None, 365.0)
    trust = {"ANTISPAM_FEEDBACK_MIN_KEYS": "5", "ANTISPAM_FEEDBACK_TRUSTED_KEYS": "mod1, mod2",
             "ANTISPAM_KEYS_FILE": "/k/keys.tsv", "ANTISPAM_FEEDBACK_RETENTION_DAYS": "30"}
    options = options_from_args(build_parser().parse_args(["retrain", "--model", "cnn", "--feedback-min-keys",
                                                            "4"]), trust)
    assert (options.feedback_min_keys, options.feedback_trusted_keys, options.keys_file,
            options.feedback_retention_days) == (4, ("mod1", "mod2"), "/k/keys.tsv", 30.0)


def test_feedback_policy_trusts_the_keys_files_labelers_and_retention_prunes(tmp_path: Path) -> None:
    from antispam.keys import add_key

    keys_file = tmp_path / "keys.tsv"
    add_key(keys_file, "boss", ["admin"], 1.0)  # issue 21: admin alone is not trusted
    add_key(keys_file, "lena", ["labeler"], 1.0)
    add_key(keys_file, "app", ["predict", "feedback"], 1.0)
    options = retrain.RetrainOptions(model="cnn", keys_file=str(keys_file), feedback_trusted_keys=("mod",),
                                     feedback_db=str(tmp_path / "f.db"), feedback_retention_days=1.0)
    assert options.feedback_policy() == retrain.FeedbackPolicy(min_keys=3, trusted=frozenset({"lena", "mod"}))
    store = FeedbackStore(tmp_path / "f.db")
    store.add("很久以前", normalize("很久以前"), SPAM, None, now=1000.0)
    store.add("刚刚", normalize("刚刚"), SPAM, None)
    store.close()
    record = retrain_record.RetrainRecord(
        time="t", model="cnn", model_dir="m", pid=1, dry_run=False, tolerance=0.0, keep=1,
        thresholds=retrain_record.Thresholds(0.5, 0.9), word2vec=retrain_record.WordVectorsInfo("reuse"))
    rows, _conflicts, stats = retrain._read_feedback(options, record)
    assert [r.text for r in rows] == ["刚刚"] and stats["distinct"] == 1
    assert record.feedback is not None and record.feedback.pruned_by_retention == 1


# ---------------------------------------------------------------------------------------------
# Real runs on a tiny corpus


def tiny_options(corpus: Path, model_base: Path, **overrides) -> retrain.RetrainOptions:
    from antispam.network.train import ClassifierSettings
    from antispam.word2vec.train import Word2VecSettings

    options = retrain.RetrainOptions(
        model="cnn", data=str(corpus), model_base=str(model_base),
        classifier=ClassifierSettings(epochs=2, batch_size=16, patience=1),
        word2vec_settings=Word2VecSettings(min_count=1, epochs=1, negatives=2, batch_size=64),
        warmup_texts=4, progress=False)
    for key, value in overrides.items():
        setattr(options, key, value)
    return options


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, retrain.RetrainResult]:
    """A tiny corpus and a model base where a first retrain run published version 1."""
    root = tmp_path_factory.mktemp("seeded")
    spam = [f"{line} 编号 {n}" for n in NUMBERS for line in TINY_SPAM]
    passed = [f"{line} 第 {n} 次" for n in NUMBERS for line in TINY_PASS]
    corpus = write_corpus(root / "corpus", spam, passed)
    result = retrain.run(tiny_options(corpus, root / "models"))
    return corpus, root / "models", result


@pytest.fixture
def model_base(seeded, tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(seeded[1], target)
    return target


def test_first_run_publishes_version_1_with_trained_vectors(seeded) -> None:
    corpus, model_base, result = seeded
    assert result.exit_code == 0 and result.published == 1 and result.serving is None
    record = retrain_record.read_log(model_base / "cnn" / retrain.LOG_FILE)[0]
    assert record["decision"] == "publish" and record["version"] == 1
    assert record["word2vec"]["origin"].startswith("trained")
    assert record["scores"]["old"] is None and 0 <= record["scores"]["new"]["f1"] <= 1
    split = load_split(corpus, progress=False)
    assert record["data"] == {"corpus_train": len(split.train), "validation": len(split.validation),
                              "test": len(split.test), "train": len(split.train),
                              "test_fingerprint": record["data"]["test_fingerprint"],
                              "everyday": len(everyday.training_part())}
    assert record["scores"]["new"]["version"] == 1  # numbered once published
    # Unset thresholds: each version is judged at its own operating points (issue 20).
    assert record["thresholds"] == {"review": None, "block": None}
    assets = versions.load_assets(model_base / "cnn", 1)
    assert assets.calibration is not None and assets.operating_points is not None
    points = assets.operating_points
    assert record["reports"]["candidate"]["thresholds"] == {
        "review": points.review.threshold, "block": points.block.threshold, "source": "version"}
    assert set(record["scores"]["new"]["at_thresholds"]) == {f"{points.review.threshold:g}",
                                                            f"{points.block.threshold:g}"}
    assert set(record["gate"]["figures"]) == {"block_precision", "block_recall", "review_recall",
                                              "everyday_flagged", "joined_blocked"}
    metrics = assets.metrics
    assert metrics["retrain"]["gate"]["reason"] == result.reason
    assert metrics["retrain"]["gate"]["thresholds"] == {"review": None, "block": None}
    assert metrics["retrain"]["test_split"] == record["data"]["test_fingerprint"]
    # Staged beside the versions, published by renaming: nothing hidden is left behind.
    assert sorted(p.name for p in (model_base / "cnn").iterdir()) == sorted([
        versions.HIGH_WATER_FILE, retrain.LOCK_FILE, "1", retrain.LOG_FILE, "gate_best.json"])


def test_dry_run_with_feedback_publishes_nothing(seeded, model_base: Path, tmp_path: Path) -> None:
    corpus = seeded[0]
    split = load_split(corpus, progress=False)
    store = FeedbackStore(tmp_path / "feedback.db")
    mod = {"key_id": "moderator"}
    store.add(split.test[0].text, normalize(split.test[0].text), 1 - split.test[0].label, 1, **mod)
    store.add("加微信领取红包优惠", normalize("加微信领取红包优惠"), SPAM, 1, **mod)
    store.add("周末一起去爬山", normalize("周末一起去爬山"), PASS, 1, **mod)
    store.add("周末一起去爬山", normalize("周末一起去爬山"), SPAM, 1, **mod)  # conflict
    store.add("今晚加班不回来吃饭", normalize("今晚加班不回来吃饭"), SPAM, 1)  # anonymous alone: refused
    store.close()
    # A lenient gate (tolerance scale 100): on the tiny corpus two seeds' figures differ by more
    # than the real tolerances, and this test is about the dry run, not the gate.
    options = tiny_options(corpus, model_base, dry_run=True, feedback_db=str(tmp_path / "feedback.db"),
                           word2vec="retrain", feedback_trusted_keys=("moderator",), tolerance=100.0)
    result = retrain.run(options)
    # Whatever the gate would decide (a trusted verdict on a held-out text may flip between two
    # seeds of the tiny model), a dry run publishes nothing and says what it would have done.
    assert result.published is None and result.exit_code == (0 if result.decision == "publish" else 3)
    assert result.reason.startswith("dry run, nothing published")
    assert versions.list_versions(model_base / "cnn") == [1]
    record = retrain_record.read_log(options.log_file)[-1]
    assert record["dry_run"] and record["serving_version"] == 1
    assert record["feedback"]["added"] == 1 and record["feedback"]["held_out"] == 1
    assert record["feedback"]["rejected"] == {"too_few_keys": 1, "conflicting": 2, "overruled_by_trusted": 0}
    assert record["conflict_count"] == 1 and record["conflicts"][0]["counts"] == {"pass": 1, "spam": 1}
    assert record["data"]["train"] == record["data"]["corpus_train"] + 1
    assert record["word2vec"]["origin"] == "trained"
    assert record["scores"]["old"]["version"] == 1
    report = format_report(result, options.log_file)
    assert ("would publish" if result.decision == "publish" else "REJECTED") in report
    assert "1 texts with conflicting labels" in report


def test_a_poisoned_store_leaves_the_training_data_as_it_was(seeded, model_base: Path, tmp_path: Path) -> None:
    """Issue 11's poisoning run, on the tiny corpus: 1,000 anonymous "pass" verdicts, on every
    corpus spam text and on new texts, change no training sample; the record says why."""
    corpus = seeded[0]
    split = load_split(corpus, progress=False)
    spam = [s.text for s in split.train if s.label == SPAM]
    texts = spam + [f"加微信领取优惠券{'甲乙丙丁戊己庚辛壬癸'[i % 10]}{'子丑寅卯辰巳午未申酉'[i // 10 % 10]}"
                    f"{'金木水火土风雨雷电雪'[i // 100 % 10]}" for i in range(1000 - len(spam))]
    store = FeedbackStore(tmp_path / "feedback.db", synchronous="NORMAL")
    for text in texts:
        store.add(text, normalize(text), PASS, 1)  # keys off: anonymous
    store.close()
    options = tiny_options(corpus, model_base, dry_run=True, feedback_db=str(tmp_path / "feedback.db"))
    result = retrain.run(options)
    record = retrain_record.read_log(options.log_file)[-1]
    assert record["data"]["train"] == record["data"]["corpus_train"]
    assert record["feedback"]["distinct"] == 1000
    assert record["feedback"]["rejected"] == {"too_few_keys": 1000, "conflicting": 0, "overruled_by_trusted": 0}
    assert record["feedback"]["relabelled_corpus"] == 0 and record["feedback"]["used"] == 0
    assert "1000 with too few agreeing keys" in format_report(result, options.log_file)


def test_gate_rejection_exits_3_and_changes_nothing(seeded, model_base: Path) -> None:
    # A tolerance scale of -1 demands a gain on every gated figure beyond its tolerance, including
    # block precision and review recall that are already 1.0 on the tiny corpus: impossible.
    options = tiny_options(seeded[0], model_base, tolerance=-1.0)
    before = sorted(p.name for p in (model_base / "cnn").iterdir())
    (model_base / "cnn" / ".staging-retrain-dead").mkdir()  # left by a run that was killed
    result = retrain.run(options)
    assert result.exit_code == retrain.EXIT_REJECTED == 3
    assert result.decision == "reject" and result.published is None
    assert "version 1 stays in service" in result.reason
    assert sorted(p.name for p in (model_base / "cnn").iterdir()) == before
    record = retrain_record.read_log(options.log_file)[-1]
    assert record["decision"] == "reject" and record["exit_code"] == 3 and record["version"] is None
    assert record["word2vec"]["origin"] == "reused from version 1"
    assert "REJECTED" in format_report(result, options.log_file)


def test_publish_prunes_old_versions_but_keeps_the_serving_one(seeded, model_base: Path) -> None:
    cnn = model_base / "cnn"
    shutil.copytree(cnn / "1", cnn / "2")  # pretend a second version is serving
    # Deployed thresholds other than the defaults: both versions are also scored there.
    options = tiny_options(seeded[0], model_base, keep=1, review_threshold=0.4, block_threshold=0.8,
                           tolerance=100.0)  # lenient: this test is about pruning, not the gate
    result = retrain.run(options)
    assert result.exit_code == 0 and result.serving == 2 and result.published == 3
    assert versions.list_versions(cnn) == [2, 3]  # 1 pruned; 2 was serving at the start
    record = retrain_record.read_log(options.log_file)[-1]
    assert record["pruned"] == [1] and record["version"] == 3
    assert record["scores"]["old"]["version"] == 2 and record["scores"]["new"]["version"] == 3
    assert record["thresholds"] == {"review": 0.4, "block": 0.8}
    for side in ("new", "old"):
        assert set(record["scores"][side]["at_thresholds"]) == {"0.4", "0.8"}
    assert set(record["seconds"]) >= {"data", "word2vec", "train", "export", "evaluate", "total"}
    metrics = versions.load_assets(cnn, 3).metrics
    assert metrics["retrain"]["serving_version_at_training"] == 2
    assert metrics["retrain"]["gate"]["thresholds"] == {"review": 0.4, "block": 0.8}
    assert metrics["retrain"]["scores"]["new"]["f1"] == record["scores"]["new"]["f1"]
    assert "review >= 0.4" in format_report(result, options.log_file)


def test_mlp_retrains_like_the_other_kinds(seeded, tmp_path: Path) -> None:
    options = tiny_options(seeded[0], tmp_path / "models", model="mlp")
    result = retrain.run(options)
    assert result.exit_code == 0 and result.published == 1
    assert versions.load_assets(tmp_path / "models" / "mlp", 1).metrics["model"] == "mlp"
    assert retrain_record.read_log(options.log_file)[-1]["model"] == "mlp"


def test_a_serving_version_that_cannot_be_evaluated_refuses_and_says_why(seeded, model_base: Path) -> None:
    cnn = model_base / "cnn"
    shutil.copytree(cnn / "1", cnn / "2")
    record_path = cnn / "2" / versions.ASSETS_DIR / versions.PREPROCESSING_FILE
    broken = json.loads(record_path.read_text(encoding="utf-8"))
    broken["calibration"] = {"method": "platt", "a": -1.0, "b": 0.0}  # decreasing: refused by the loader
    record_path.write_text(json.dumps(broken), encoding="utf-8")
    options = tiny_options(seeded[0], model_base)
    result = retrain.run(options)
    assert result.exit_code == retrain.EXIT_REJECTED and result.published is None
    assert "serving version 2 cannot be evaluated" in result.reason
    record = retrain_record.read_log(options.log_file)[-1]
    assert "decision record" in record["serving_unusable"]
    assert versions.list_versions(cnn) == [1, 2]


def test_the_gate_judges_at_each_versions_operating_points_and_keeps_the_best(seeded, model_base: Path) -> None:
    options = tiny_options(seeded[0], model_base, tolerance=100.0)  # lenient: this run must publish
    result = retrain.run(options)
    assert result.exit_code == 0 and result.published == 2
    record = retrain_record.read_log(options.log_file)[-1]
    for side in ("candidate", "serving"):
        assert record["reports"][side]["thresholds"]["source"] == "version"
    assert record["reports"]["serving"]["model"]["version"] == 1
    best = json.loads((model_base / "cnn" / "gate_best.json").read_text(encoding="utf-8"))
    assert best["gate_set"] == record["gate"]["gate_set"]
    for name, row in record["gate"]["figures"].items():
        assert row["tolerance"] == pytest.approx(100.0 * decision.GATED[name][1])
        if row["candidate"] is not None:  # the record holds the better of the old best and version 2
            assert best["figures"][name]["value"] == decision.better(name, row["candidate"], row["best"])
    assert "gate (candidate / serving / best ever" in format_report(result, options.log_file)
