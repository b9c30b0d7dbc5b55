"""The nightly retrain job as a library: corpus + feedback → word2vec → classifier → gate → publish.

One run, under an exclusive lock on the model folder:

1. **Data.** The base corpus split (:func:`antispam.data.load_split`, the same split every
   command uses) plus the feedback store. Feedback joins the *training* part only, and never a
   text whose normalized form is in the base validation or test split: those splits are the
   fixed yardstick every version is measured with, and a moderator's verdict on a test message
   would leak the answer into training. A feedback verdict that contradicts the corpus label of
   a training text replaces it (a person looked at it more recently); texts moderators reported
   under both labels are left out and listed in the report.
2. **Word vectors.** By default the serving version's own vectors are reused: the vocabulary
   stays stable night to night, and word2vec (minutes) is skipped. ``retrain`` trains them anew
   on the training texts including feedback, which a growing vocabulary eventually needs.
3. **Classifier**, trained and early-stopped on training/validation as ``antispam train`` does.
4. **Gate.** The candidate is exported into a hidden folder inside the model folder (TF Serving
   and the service ignore names that are not integers), then it and the version now serving are
   scored on the same test split through the same path the service uses (SavedModel signature,
   each version's own vectors). The candidate is published — one atomic rename — only if its
   F1 is at least the serving version's minus ``tolerance``. Otherwise nothing changes and the
   run ends with exit code 3 and the reason.
5. **Prune** old versions, keeping the newest ``keep`` and never the one that was serving when
   the run started (the service and TF Serving may still be answering with it).
6. **Promotion log**: one JSON line per run, written with a single ``O_APPEND`` write and fsync,
   whatever the outcome (published, rejected, dry run, busy, error).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from antispam import versions
from antispam.data import Sample, Split
from antispam.errors import UserError
from antispam.everyday import with_everyday
from antispam.lock import FileLock, LockBusy
from antispam.text import normalize

log = logging.getLogger(__name__)

EXIT_PUBLISHED = 0
EXIT_REJECTED = 3
EXIT_BUSY = LockBusy.exit_code  # 4

MODELS = ("cnn", "rnn")
WORD2VEC_MODES = ("reuse", "retrain")
LOCK_FILE = ".retrain.lock"
LOG_FILE = "promotion.jsonl"
CANDIDATE_PREFIX = ".candidate-"
TOMBSTONE_PREFIX = ".deleted-"
CONFLICT_EXAMPLES = 20  # conflicting texts listed in one log line
SCORE_KEYS = ("f1", "accuracy", "precision", "recall", "roc_auc", "count")
# Comparing floats: a candidate exactly at the limit passes despite rounding in the scores.
EPSILON = 1e-12


class RetrainError(UserError):
    """The run cannot start or finish for a reason the operator can fix."""


@dataclass
class RetrainOptions:
    """Everything one run needs; ``antispam retrain`` fills it from flags and environment."""

    model: str
    data: str | None = None  # corpus path; None: $ANTISPAM_DATA, else a verified download
    data_dir: str = "data"  # where a downloaded corpus goes
    model_base: str = "models"
    feedback_db: str | None = None  # None: no feedback
    feedback_required: bool = False  # the path was given explicitly: missing is an error
    word2vec: str = "reuse"
    tolerance: float = 0.005
    keep: int = 5
    dry_run: bool = False
    log_path: str | None = None  # default <model_base>/<model>/promotion.jsonl
    classifier: Any = None  # antispam.network.train.ClassifierSettings; None: its defaults
    word2vec_settings: Any = None  # antispam.word2vec.train.Word2VecSettings; None: defaults
    warmup_texts: int = 64
    progress: bool = True

    def validate(self) -> None:
        problems = []
        if self.model not in MODELS:
            problems.append(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.word2vec not in WORD2VEC_MODES:
            problems.append(f"--word2vec must be reuse or retrain, got {self.word2vec!r}")
        if not math.isfinite(self.tolerance) or not -1.0 <= self.tolerance <= 1.0:
            problems.append(f"--tolerance must be a number in [-1, 1] (an F1 difference), got {self.tolerance}")
        if self.keep < 1:
            problems.append(f"--keep must be at least 1, got {self.keep}")
        if self.warmup_texts < 1:
            problems.append("warmup_texts must be at least 1")
        if problems:
            raise RetrainError("; ".join(problems))

    @property
    def model_dir(self) -> Path:
        return versions.model_dir(self.model_base, self.model)

    @property
    def log_file(self) -> Path:
        return Path(self.log_path) if self.log_path else self.model_dir / LOG_FILE


@dataclass
class RetrainResult:
    exit_code: int
    decision: str  # "publish" | "reject"
    published: int | None  # the new version, None unless published
    serving: int | None  # the version serving when the run started
    reason: str
    record: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Pure parts: feedback merge, gate, prune, log


@dataclass
class FeedbackMerge:
    train: list[Sample]
    counts: dict[str, int]
    conflicts: list[dict[str, Any]]


def merge_feedback(split: Split, feedback: Iterable[Any], conflicts: Iterable[Any] = ()) -> FeedbackMerge:
    """The training samples with feedback folded in, and what happened to each verdict.

    ``feedback`` items need ``text``, ``label`` and ``count`` (:class:`antispam.feedback.FeedbackSample`);
    texts are normalized again here, with today's pipeline, so a verdict stored under an older
    normalizer still lands on the right key.
    """
    conflicts = list(conflicts)
    held_out = {normalize(s.text) for s in (*split.validation, *split.test)}
    corpus_train = {normalize(s.text): s.label for s in split.train}
    counts = {"distinct": 0, "reports": 0, "used": 0, "added": 0, "relabelled_corpus": 0,
              "already_in_corpus": 0, "held_out": 0, "empty": 0, "conflicting": len(conflicts)}
    conflict_list = [c.as_dict() if hasattr(c, "as_dict") else dict(c) for c in conflicts]
    by_key: dict[str, list[Any]] = {}
    for item in feedback:
        counts["distinct"] += 1
        counts["reports"] += int(getattr(item, "count", 1))
        key = normalize(item.text)
        if not key:
            counts["empty"] += 1
            continue
        by_key.setdefault(key, []).append(item)
    chosen: dict[str, Sample] = {}
    for key, items in by_key.items():
        labels = {int(i.label) for i in items}
        if len(labels) > 1:  # two stored keys that today's normalizer merges, with both labels
            counts["conflicting"] += 1
            conflict_list.append({"normalized": key, "text": items[0].text,
                                  "counts": {str(int(i.label)): int(i.count) for i in items}})
            continue
        label = labels.pop()
        if key in held_out:
            counts["held_out"] += 1
            continue
        if key in corpus_train:
            if corpus_train[key] == label:
                counts["already_in_corpus"] += 1
                continue
            counts["relabelled_corpus"] += 1
        else:
            counts["added"] += 1
        chosen[key] = Sample(items[0].text, label)
    counts["used"] = len(chosen)
    train = [s for s in split.train if normalize(s.text) not in chosen] + list(chosen.values())
    return FeedbackMerge(train, counts, conflict_list)


def gate(new_f1: float, old_f1: float | None, tolerance: float, serving: int | None) -> tuple[bool, str]:
    """Publish or not, and why, in words an operator reads in the log."""
    if old_f1 is None:
        if serving is None:
            return True, "no version is serving yet: the first version is published without a comparison"
        return True, (f"serving version {serving} cannot be scored with this pipeline, so it cannot "
                      "be what the service answers with: the new version replaces it")
    change = new_f1 - old_f1
    if new_f1 + EPSILON >= old_f1 - tolerance:
        return True, (f"test F1 {new_f1:.4f} vs {old_f1:.4f} for serving version {serving} "
                      f"(change {change:+.4f}) is within the tolerance of {tolerance:g}")
    return False, (f"test F1 {new_f1:.4f} is {-change:.4f} below serving version {serving}'s "
                   f"{old_f1:.4f}, more than the tolerance of {tolerance:g}: version {serving} "
                   "stays in service and nothing was published")


def prune(model_dir: str | os.PathLike[str], keep: int, protect: Iterable[int | None] = ()) -> list[int]:
    """Delete all but the newest ``keep`` versions, never the newest nor any in ``protect``.

    A version leaves view with one rename to a hidden name (readers see it complete or not at
    all), then its files are removed.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    model_dir = Path(model_dir)
    present = versions.list_versions(model_dir)
    kept = set(present[-keep:]) | {int(v) for v in protect if v is not None}
    removed = []
    for version in present:
        if version in kept:
            continue
        tomb = model_dir / f"{TOMBSTONE_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(versions.version_dir(model_dir, version), tomb)
        except FileNotFoundError:
            continue  # someone else removed it (an operator rolling back)
        shutil.rmtree(tomb, ignore_errors=True)
        removed.append(version)
    return removed


def clean_leftovers(model_dir: str | os.PathLike[str]) -> list[str]:
    """Remove candidates and tombstones of runs that died; only call while holding the lock."""
    removed: list[str] = []
    root = Path(model_dir)
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.startswith((CANDIDATE_PREFIX, TOMBSTONE_PREFIX)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def append_log(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one JSON line: one ``write`` on an ``O_APPEND`` descriptor, then fsync.

    POSIX appends of a single write land whole at the end of the file, so concurrent writers
    (a busy run logging its refusal while the holder logs its result) never interleave lines.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False, sort_keys=True, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path} ({written} of {len(line)} bytes): disk full?")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def brief_scores(scores: dict[str, Any] | None) -> dict[str, Any] | None:
    if scores is None:
        return None
    out = {key: scores.get(key) for key in SCORE_KEYS}
    out["confusion"] = scores.get("confusion")
    out["version"] = (scores.get("model") or {}).get("version")
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# The run


def run(options: RetrainOptions) -> RetrainResult:
    """One retrain run; see the module docstring. Raises :class:`LockBusy` (exit code 4) when
    another run holds the model folder, :class:`RetrainError` for bad setup."""
    options.validate()
    model_dir = options.model_dir
    record: dict[str, Any] = {
        "time": _now(), "model": options.model, "model_dir": str(model_dir), "pid": os.getpid(),
        "dry_run": options.dry_run, "tolerance": options.tolerance, "keep": options.keep,
        "word2vec": {"mode": options.word2vec},
    }
    started = time.perf_counter()
    lock = FileLock(model_dir / LOCK_FILE, what=f"retrain of {options.model} in {model_dir}")
    try:
        lock.acquire()
    except LockBusy as exc:
        record.update(decision="busy", exit_code=EXIT_BUSY, reason=str(exc), version=None)
        append_log(options.log_file, record)
        raise
    try:
        try:
            result = _run_locked(options, model_dir, record)
        except BaseException as exc:
            record.update(decision="error", exit_code=getattr(exc, "exit_code", 1), version=None,
                          reason=f"{type(exc).__name__}: {exc}",
                          seconds={**record.get("seconds", {}),
                                   "total": round(time.perf_counter() - started, 1)})
            append_log(options.log_file, record)
            raise
        record.setdefault("seconds", {})["total"] = round(time.perf_counter() - started, 1)
        append_log(options.log_file, record)
        return result
    finally:
        lock.release()


def _run_locked(options: RetrainOptions, model_dir: Path, record: dict[str, Any]) -> RetrainResult:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from antispam import data
    from antispam.config import ServeConfig
    from antispam.text import Segmenter

    seconds: dict[str, float] = {}
    record["seconds"] = seconds
    clock = time.perf_counter()
    leftovers = clean_leftovers(model_dir)
    if leftovers:
        log.info("removed leftovers of earlier runs: %s", ", ".join(leftovers))

    split = data.load_split(options.data, options.data_dir, progress=options.progress)
    feedback, conflicts, store_stats = _read_feedback(options, record)
    merged = merge_feedback(split, feedback, conflicts)
    # The shipped everyday messages join the training data as `antispam train` adds them.
    train_split = with_everyday(Split(merged.train, split.validation, split.test, seed=split.seed,
                                      stats=split.stats))
    record["data"] = {
        "corpus_train": len(split.train), "validation": len(split.validation), "test": len(split.test),
        "train": len(merged.train), "test_fingerprint": data.fingerprint(split.test),
        "everyday": train_split.stats.get("everyday_added_to_train", 0),
    }
    record["feedback"].update(merged.counts)
    record["feedback"]["store"] = store_stats
    record["conflicts"] = merged.conflicts[:CONFLICT_EXAMPLES]
    record["conflict_count"] = len(merged.conflicts)
    seconds["data"] = round(time.perf_counter() - clock, 1)

    serving = versions.latest_version(model_dir)
    record["serving_version"] = serving
    segmenter = Segmenter()

    clock = time.perf_counter()
    vectors = _word_vectors(options, model_dir, serving, merged.train, segmenter, record)
    seconds["word2vec"] = round(time.perf_counter() - clock, 1)

    from antispam.network.evaluate import evaluate_version
    from antispam.network.export import ExportError, export_version
    from antispam.network.train import ClassifierSettings, train_classifier
    from antispam.network.warmup import warmup_texts

    settings = options.classifier or ClassifierSettings()
    clock = time.perf_counter()
    try:
        trained = train_classifier(options.model, train_split, vectors, settings,
                                   progress=options.progress, segmenter=segmenter)
    except ValueError as exc:
        raise RetrainError(f"cannot train {options.model}: {exc}") from exc
    seconds["train"] = round(time.perf_counter() - clock, 1)
    record["training"] = {"best_epoch": trained.best_epoch, "epochs_run": len(trained.history),
                          "stopped_because": trained.stopped_because,
                          "settings": dataclasses.asdict(settings)}

    thresholds = (ServeConfig().review_threshold, ServeConfig().block_threshold)
    candidate_root = model_dir / f"{CANDIDATE_PREFIX}{uuid.uuid4().hex}"
    try:
        clock = time.perf_counter()
        retrain_info = {"feedback": dict(merged.counts), "word2vec": dict(record["word2vec"]),
                        "serving_version_at_training": serving}
        try:
            staged = export_version(trained, vectors, candidate_root,
                                    warmup_texts(train_split.train, options.warmup_texts, settings.seed),
                                    {"retrain": retrain_info}, model_name=options.model,
                                    segmenter=segmenter)
        except ExportError as exc:
            raise RetrainError(f"export failed, nothing published: {exc}") from exc
        seconds["export"] = round(time.perf_counter() - clock, 1)

        clock = time.perf_counter()
        new_scores = evaluate_version(candidate_root, staged, split.test, thresholds, segmenter)
        old_scores = None
        if serving is not None:
            try:
                old_scores = evaluate_version(model_dir, serving, split.test, thresholds, segmenter)
            except versions.VersionError as exc:
                log.warning("serving version %s cannot be evaluated: %s", serving, exc)
                record["serving_unusable"] = str(exc)
        seconds["evaluate"] = round(time.perf_counter() - clock, 1)
        record["scores"] = {"new": brief_scores(new_scores), "old": brief_scores(old_scores)}

        publish, reason = gate(new_scores["f1"], old_scores["f1"] if old_scores else None,
                               options.tolerance, serving)
        decision = "publish" if publish else "reject"
        version = None
        pruned: list[int] = []
        if publish and not options.dry_run:
            from antispam.atomic import atomic_write_json

            metrics_path = versions.version_dir(candidate_root, staged) / versions.ASSETS_DIR / versions.METRICS_FILE
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
            metrics["retrain"].update({
                "gate": {"tolerance": options.tolerance, "reason": reason},
                "scores": record["scores"], "test_split": record["data"]["test_fingerprint"],
            })
            atomic_write_json(metrics_path, metrics)
            version = versions.publish(versions.version_dir(candidate_root, staged), model_dir)
            pruned = prune(model_dir, options.keep, protect=(version, serving))
            log.info("published %s version %d; pruned %s", options.model, version, pruned or "nothing")
        elif options.dry_run:
            reason = f"dry run, nothing published; the gate would {decision}: {reason}"
    finally:
        versions.discard(candidate_root)

    exit_code = EXIT_PUBLISHED if publish else EXIT_REJECTED
    record.update(decision=decision, exit_code=exit_code, version=version, reason=reason, pruned=pruned)
    return RetrainResult(exit_code, decision, version, serving, reason, record)


def _read_feedback(options: RetrainOptions, record: dict[str, Any]) -> tuple[list[Any], list[Any], dict[str, Any]]:
    record["feedback"] = {"db": options.feedback_db}
    if not options.feedback_db:
        return [], [], {}
    path = Path(options.feedback_db)
    if not path.is_file():
        if options.feedback_required:
            raise RetrainError(f"no feedback store at {path} (from --feedback-db); "
                               "leave the flag out to train on the corpus alone")
        log.info("no feedback store at %s yet: training on the corpus alone", path)
        record["feedback"]["missing"] = True
        return [], [], {}
    from antispam.feedback import FeedbackError, FeedbackStore

    store = FeedbackStore(path)
    try:
        return store.samples(), store.conflicts(), store.stats()
    except FeedbackError as exc:
        raise RetrainError(str(exc)) from exc
    finally:
        store.close()


def _word_vectors(options: RetrainOptions, model_dir: Path, serving: int | None,
                  train: Sequence[Sample], segmenter: Any, record: dict[str, Any]) -> Any:
    info = record["word2vec"]
    if options.word2vec == "reuse" and serving is not None:
        try:
            vectors = versions.load_assets(model_dir, serving).vectors
        except versions.VersionError as exc:
            log.warning("cannot reuse the vectors of version %s (%s): training new ones", serving, exc)
            info["origin"] = f"trained (version {serving}'s vectors unusable: {exc})"
        else:
            info.update(origin=f"reused from version {serving}", words=len(vectors))
            return vectors
    else:
        info["origin"] = "trained" if options.word2vec == "retrain" else "trained (no version to reuse)"
    from antispam.word2vec.train import Word2VecSettings, train_word2vec

    settings = options.word2vec_settings or Word2VecSettings()
    tokens = [segmenter.tokenize(s.text) for s in train]
    vectors, report = train_word2vec(tokens, settings, progress=options.progress)
    info.update(words=len(vectors), train_seconds=report.get("train_seconds"),
                final_loss=report.get("final_loss"))
    return vectors


def format_report(result: RetrainResult, log_file: str | os.PathLike[str]) -> str:
    """The lines ``antispam retrain`` prints: the decision first, then what it rests on."""
    record = result.record
    model = record.get("model")
    dry = " (dry run)" if record.get("dry_run") else ""
    if result.published is not None:
        head = f"retrain {model}: published version {result.published}"
    elif result.decision == "publish":
        head = f"retrain {model}{dry}: would publish"
    else:
        head = f"retrain {model}{dry}: REJECTED, nothing published (exit code {result.exit_code})"
    lines = [head, f"  why: {result.reason}"]
    scores = record.get("scores") or {}
    new, old = scores.get("new") or {}, scores.get("old") or {}
    if new:
        shown = f"  test F1: candidate {new['f1']:.4f}"
        if old:
            shown += f", serving version {old.get('version')} {old['f1']:.4f}"
        lines.append(shown + f" (accuracy {new['accuracy']:.4f}; {new['count']} test messages)")
    data_counts = record.get("data") or {}
    fb = record.get("feedback") or {}
    if data_counts:
        lines.append(f"  data: train {data_counts['train']} (corpus {data_counts['corpus_train']}, "
                     f"+{fb.get('added', 0)} feedback, {fb.get('relabelled_corpus', 0)} relabelled), "
                     f"validation {data_counts['validation']}, test {data_counts['test']}")
    if fb.get("missing"):
        lines.append(f"  feedback: none yet (no store at {fb['db']})")
    elif fb.get("db"):
        stored = (fb.get("store") or {}).get("distinct", fb.get("distinct", 0))
        lines.append(f"  feedback: {stored} distinct verdicts in {fb['db']}: {fb.get('used', 0)} used "
                     f"({fb.get('added', 0)} new texts, {fb.get('relabelled_corpus', 0)} corpus labels "
                     f"corrected), {fb.get('already_in_corpus', 0)} already in the corpus, "
                     f"{fb.get('held_out', 0)} left out as validation/test texts, "
                     f"{record.get('conflict_count', 0)} texts with conflicting labels left out")
    w2v = record.get("word2vec") or {}
    lines.append(f"  word vectors: {w2v.get('origin', w2v.get('mode'))}")
    if record.get("pruned"):
        lines.append(f"  pruned versions: {', '.join(map(str, record['pruned']))}")
    took = (record.get("seconds") or {})
    lines.append(f"  took {took.get('total', 0):.0f} s "
                 f"({', '.join(f'{k} {v:.0f} s' for k, v in took.items() if k != 'total')}); "
                 f"log: {log_file}")
    return "\n".join(lines)
