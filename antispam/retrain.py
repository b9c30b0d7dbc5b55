"""The nightly retrain job as a library: corpus + feedback → word2vec → classifier → gate → publish.

One run, under an exclusive lock on the model folder:

1. **Data.** The base corpus split (:func:`antispam.data.load_split`, the same split every
   command uses) plus the feedback store. Feedback joins the *training* part only, and never a
   text whose normalized form is in the base validation or test split: those splits are the
   fixed yardstick every version is measured with, and a moderator's verdict on a test message
   would leak the answer into training. Only a verdict that counts (:class:`FeedbackPolicy`: a
   trusted key id sent it, or ``min_keys`` distinct key ids agree and none disagrees) may
   change training: one that contradicts the corpus label of a training text replaces it (a
   person looked at it more recently) — up to a cap per night and per key (issue 21); flips
   beyond it wait in the store's ``label_flips`` ledger for ``antispam feedback approve``. The
   rest are refused and counted by reason, and texts reported under both labels without a
   trusted verdict are left out and listed in the report. Rows past the retention are deleted
   from the store first.
2. **Word vectors.** By default the serving version's own vectors are reused: the vocabulary
   stays stable night to night, and word2vec (minutes) is skipped. ``retrain`` trains them anew
   on the training texts including feedback, which a growing vocabulary eventually needs.
3. **Classifier** of any kind ``antispam train`` knows (:data:`antispam.network.models.KINDS`),
   trained and early-stopped on training/validation as ``antispam train`` does.
4. **Stage and gate.** The candidate is staged and checked
   (:func:`antispam.network.export.stage_version`: a hidden folder beside the versions, which TF
   Serving and the service ignore), then it and the version now serving are scored on the same
   test split through the path the service uses (:func:`antispam.versions.load_version`: the
   SavedModel signature and each version's own vectors and windows), at the service's review
   and block thresholds. The candidate is published only if its F1 (spam, p >= 0.5) is at least
   the serving version's minus ``tolerance``: its final ``metrics.json`` is written into the
   staged folder, then one atomic rename (:func:`antispam.versions.publish`). Otherwise the
   staged folder is removed, nothing changes, and the run ends with exit code 3 and the reason.
5. **Prune** old versions (:func:`antispam.versions.prune`), keeping the newest ``keep`` and
   never the one that was serving when the run started (the service and TF Serving may still be
   answering with it).
6. **Promotion log**: one :class:`~antispam.retrain_record.RetrainRecord` per run, whatever the
   outcome (published, rejected, dry run, busy, error), appended as one JSON line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from antispam import versions
from antispam.config import Paths, ServeConfig, opt, same_as
from antispam.data import Sample, Split
from antispam.errors import UserError
from antispam.everyday import with_everyday
from antispam.labels import NAMES
from antispam.lock import FileLock, LockBusy
from antispam.network.models import KINDS
from antispam.operating_points import check_thresholds
from antispam.privacy import conflict_ref, redact_conflict
from antispam.retrain_record import (
    DataCounts,
    FeedbackSummary,
    GateScores,
    RetrainRecord,
    Thresholds,
    TrainingSummary,
    VersionScores,
    WordVectorsInfo,
    append_log,
)
from antispam.text import normalize

log = logging.getLogger(__name__)

EXIT_PUBLISHED = 0
EXIT_REJECTED = 3
EXIT_BUSY = LockBusy.exit_code  # 4

MODELS: tuple[str, ...] = tuple(KINDS)  # every kind `antispam train` trains
WORD2VEC_MODES = ("reuse", "retrain")
LOCK_FILE = ".retrain.lock"
LOG_FILE = "promotion.jsonl"
CONFLICT_EXAMPLES = 20  # conflicting texts listed in one log line
ANONYMOUS = "anonymous"  # antispam.feedback.ANONYMOUS (kept import-free here)
# The service's settings (ServeConfig): one default, one variable, one help.
DEFAULT_MIN_KEYS: int = ServeConfig.feedback_min_keys
# Issue 21: corpus labels feedback may flip per UTC day, in all and per key id (0: no cap).
DEFAULT_MAX_FLIPS: int = ServeConfig.feedback_max_flips
DEFAULT_MAX_FLIPS_PER_KEY: int = ServeConfig.feedback_max_flips_per_key
REJECTION_REASONS = ("too_few_keys", "conflicting", "overruled_by_trusted")
# Comparing floats: a candidate exactly at the limit passes despite rounding in the scores.
EPSILON = 1e-12


class RetrainError(UserError):
    """The run cannot start or finish for a reason the operator can fix."""


@dataclass
class RetrainOptions:
    """Everything one run needs, built like every command's settings (issue 22):
    ``antispam retrain`` adds the flags with :func:`antispam.config.add_arguments` and builds this
    with :func:`antispam.config.resolve` (flag > ``ANTISPAM_*`` > default). The settings the job
    shares with the service or the trainers are theirs (:func:`antispam.config.same_as`: one
    default, one variable, one help); the job's own are flags only. Validated when built
    (:meth:`validate`, from ``__post_init__``): a bad value is a ``ValueError`` naming the flag,
    which ``resolve`` turns into a one-line error naming the variable when it came from one.
    """

    # The classifier to retrain (`antispam retrain --model` is required; built in code: the
    # service's default model).
    model: str = same_as(ServeConfig, "model_name")
    data: str | None = same_as(Paths, "data")  # None: a verified download into data_dir
    data_dir: str = same_as(Paths, "data_dir")
    model_base: str = same_as(ServeConfig, "model_base")
    # The store `antispam serve` writes; "" or None: no feedback.
    feedback_db: str | None = same_as(ServeConfig, "feedback_db")
    feedback_required: bool = False  # the path was given by flag: a missing store is an error
    word2vec: str = opt("reuse", None, "reuse the serving version's word vectors (trained anyway when no "
                        "version exists) or train new ones on the training texts including feedback",
                        WORD2VEC_MODES)
    # Scale of the gate's per-figure tolerances (antispam.network.decision.GATED): 1 as
    # documented, 0 no loss at all, negative: every figure must improve by that much.
    tolerance: float = opt(1.0, None, "scale of the gate's documented per-figure tolerances (0: no loss "
                           "at all; negative: require an improvement)")
    seed: int | None = opt(None, None, "the classifier's seed (unset: the trainer's; a nightly job may vary it)")
    keep: int = opt(5, None, "versions kept after publishing; the newest and the one serving at the "
                    "start are always kept")
    dry_run: bool = opt(False, None, "train and evaluate, publish and prune nothing; the exit code still "
                        "tells what the gate would decide")
    log_path: str | None = opt(None, None, "promotion log, JSON Lines (unset: MODEL_BASE/MODEL/promotion.jsonl)")
    # The service's thresholds: the candidate and the serving version are also scored there.
    # None: each version's own operating points, as the service's default policy applies them.
    review_threshold: float | None = same_as(ServeConfig, "review_threshold")
    block_threshold: float | None = same_as(ServeConfig, "block_threshold")
    classifier: Any = None  # antispam.network.train.ClassifierSettings; None: its defaults
    word2vec_settings: Any = None  # antispam.word2vec.train.Word2VecSettings; None: defaults
    warmup_texts: int = 64
    progress: bool = opt(True, None, "progress bars (on a terminal; else a log line every 10%)")
    # Issue 11: whose feedback may change training (FeedbackPolicy), and the store's retention.
    feedback_min_keys: int = same_as(ServeConfig, "feedback_min_keys")
    feedback_trusted_keys: tuple[str, ...] = same_as(ServeConfig, "feedback_trusted_keys")  # "a,b" too
    keys_file: str | None = same_as(ServeConfig, "keys_file")  # its labeler key ids are trusted too; "": none
    feedback_retention_days: float = same_as(ServeConfig, "feedback_retention_days")  # 0: keep every row
    feedback_max_flips: int = same_as(ServeConfig, "feedback_max_flips")  # per UTC day; 0: no cap
    feedback_max_flips_per_key: int = same_as(ServeConfig, "feedback_max_flips_per_key")

    def __post_init__(self) -> None:
        # As the service reads them: an empty path is no store, no keys file; key ids comma-separated.
        self.feedback_db = self.feedback_db or None
        self.keys_file = self.keys_file or None
        trusted: Any = self.feedback_trusted_keys  # a flag's value arrives as "a,b"
        if isinstance(trusted, str):
            self.feedback_trusted_keys = tuple(k.strip() for k in trusted.split(",") if k.strip())
        self.validate()

    def feedback_policy(self) -> FeedbackPolicy:
        trusted = set(self.feedback_trusted_keys)
        if self.keys_file:
            from antispam.keys import KeysFileError, load_keys

            try:  # the labeler role itself, not what admin implies: admin alone is not trusted
                trusted |= {k.key_id for k in load_keys(self.keys_file).values() if "labeler" in k.roles}
            except KeysFileError as exc:
                raise RetrainError(str(exc)) from exc
        return FeedbackPolicy(min_keys=self.feedback_min_keys, trusted=frozenset(trusted),
                              max_flips=self.feedback_max_flips,
                              max_flips_per_key=self.feedback_max_flips_per_key)

    def validate(self) -> None:
        """ValueError naming the flags of every bad setting (also for options changed after
        they were built: :func:`run` calls it again)."""
        problems = []
        if self.model not in MODELS:
            problems.append(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.word2vec not in WORD2VEC_MODES:
            problems.append(f"--word2vec must be reuse or retrain, got {self.word2vec!r}")
        if not math.isfinite(self.tolerance) or not -10.0 <= self.tolerance <= 100.0:
            problems.append("--tolerance must be a number in [-10, 100] (a scale of the gate's documented "
                            f"per-figure tolerances), got {self.tolerance}")
        if self.keep < 1:
            problems.append(f"--keep must be at least 1, got {self.keep}")
        threshold_problem = check_thresholds(self.review_threshold, self.block_threshold)
        if threshold_problem:  # also refuses NaN
            problems.append(f"thresholds: {threshold_problem} (--review-threshold, --block-threshold)")
        if self.feedback_min_keys < 1:
            problems.append(f"--feedback-min-keys must be at least 1, got {self.feedback_min_keys}")
        if self.feedback_max_flips < 0 or self.feedback_max_flips_per_key < 0:
            problems.append("--feedback-max-flips and --feedback-max-flips-per-key must be >= 0 (0: no cap)")
        if self.warmup_texts < 1:
            problems.append("warmup_texts must be at least 1")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def model_dir(self) -> Path:
        return versions.model_dir(self.model_base, self.model)

    @property
    def log_file(self) -> Path:
        return Path(self.log_path) if self.log_path else self.model_dir / LOG_FILE

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(review=self.review_threshold, block=self.block_threshold)


@dataclass
class RetrainResult:
    exit_code: int
    decision: str  # "publish" | "reject"
    published: int | None  # the new version, None unless published
    serving: int | None  # the version serving when the run started
    reason: str
    record: RetrainRecord


# ---------------------------------------------------------------------------------------------
# Policy: feedback merge and gate


@dataclass
class FeedbackMerge:
    train: list[Sample]
    counts: dict[str, int]
    conflicts: list[dict[str, Any]]
    # Issue 21: this run's new decisions on corpus label flips, for the store's label_flips
    # ledger (FeedbackStore.record_flips): digest, label, corpus_label, key_ids, feedback_id, status.
    flips: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # Verdicts a trusted key settled: the gate's regression set (they must still hold, issue 20).
    trusted: list[Sample] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class FlipLedger:
    """What earlier runs decided about corpus label flips (the store's ``label_flips``), as the
    merge needs it: each (digest, label)'s status, and the flips already applied today (UTC) in
    all and per key id, which count toward today's caps."""

    status: dict[tuple[str, int], str] = dataclasses.field(default_factory=dict)
    applied_today: int = 0
    applied_today_by_key: dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_flips(cls, flips: Iterable[Any], now: float | None = None) -> FlipLedger:
        """From :meth:`antispam.feedback.FeedbackStore.flips` rows."""
        midnight = ((time.time() if now is None else now) // 86400) * 86400
        status: dict[tuple[str, int], str] = {}
        by_key: dict[str, int] = {}
        today = 0
        for flip in flips:
            status[(flip.digest, int(flip.label))] = flip.status
            if flip.status == "applied" and flip.decided_at >= midnight:
                today += 1
                for key_id in flip.key_ids:
                    by_key[key_id] = by_key.get(key_id, 0) + 1
        return cls(status, today, by_key)


def text_digest(normalized: str) -> str:
    """The label_flips ledger's name for a text: sha256 of its normalized form (no text stored)."""
    return hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()



@dataclass(frozen=True)
class FeedbackPolicy:
    """Whose verdicts may change training (issue 11: feedback that cannot poison the model).

    A verdict on a text enters training (or flips a corpus label) only if a trusted key id sent
    it (``trusted``: the keys file's ``labeler`` key ids plus ``--feedback-trusted-keys``), or if at
    least ``min_keys`` distinct key ids agree on it and no key disagrees. ``anonymous`` (feedback
    sent while keys are off, and rows older than schema 2) counts as one key at most.
    When trusted keys disagree among themselves the text is a conflict and left out.

    Issue 21: trusted means a ``labeler`` key, never ``admin`` alone. A verdict that would flip the
    label of a corpus training text is applied only while fewer than ``max_flips`` flips were
    applied today (UTC) and fewer than ``max_flips_per_key`` were charged today to each key id
    behind it (the trusted ids that gave it, or every agreeing id); beyond that it is held,
    ``pending``, until a person runs ``antispam feedback approve``. A flip applied or approved
    once is applied on every later run without counting again. 0 turns a cap off.
    """

    min_keys: int = DEFAULT_MIN_KEYS
    trusted: frozenset[str] = frozenset()
    max_flips: int = DEFAULT_MAX_FLIPS
    max_flips_per_key: int = DEFAULT_MAX_FLIPS_PER_KEY


def merge_feedback(split: Split, feedback: Iterable[Any], conflicts: Iterable[Any] = (),
                   policy: FeedbackPolicy | None = None, ledger: FlipLedger | None = None) -> FeedbackMerge:
    """The training samples with feedback folded in, and what happened to each verdict.

    ``feedback`` items need ``text``, ``label`` and ``count`` and may have ``key_id``
    (:class:`antispam.feedback.FeedbackSample`; without one: ``anonymous``); texts are normalized
    again here, with today's pipeline, so a verdict stored under an older normalizer still lands on
    the right key. Which verdicts may count is ``policy`` (:class:`FeedbackPolicy`); the rows it
    refuses are counted in ``rejected_<reason>`` (``too_few_keys``: fewer than ``min_keys``
    untrusted keys agree; ``conflicting``: keys disagree and no trusted key settles it;
    ``overruled_by_trusted``: an untrusted row against a trusted key's label). Corpus label flips
    go through the caps (:class:`FeedbackPolicy`) with ``ledger``, what earlier runs decided
    (None: nothing yet); ``held_for_approval`` counts the flips held, ``flips`` the new decisions.
    """
    policy = policy or FeedbackPolicy()
    ledger = ledger or FlipLedger()
    applied_today, charged = ledger.applied_today, dict(ledger.applied_today_by_key)
    new_flips: list[dict[str, Any]] = []
    conflicts = list(conflicts)
    held_out = {normalize(s.text) for s in (*split.validation, *split.test)}
    corpus_train = {normalize(s.text): s.label for s in split.train}
    counts = {"distinct": 0, "reports": 0, "used": 0, "added": 0, "relabelled_corpus": 0,
              "already_in_corpus": 0, "held_out": 0, "empty": 0, "conflicting": len(conflicts),
              "trusted": 0, "agreed": 0, "min_keys": policy.min_keys, "held_for_approval": 0,
              **{f"rejected_{reason}": 0 for reason in REJECTION_REASONS}}
    # Issue 21: the promotion log keeps a hash and a redacted excerpt of a conflict, never its text.
    conflict_list = [redact_conflict(c.as_dict() if hasattr(c, "as_dict") else dict(c)) for c in conflicts]
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
    trusted_verdicts: list[Sample] = []
    for key, items in by_key.items():
        keys_by_label: dict[int, set[str]] = {}
        trusted_labels: set[int] = set()
        for item in items:
            key_id = str(getattr(item, "key_id", None) or ANONYMOUS)
            keys_by_label.setdefault(int(item.label), set()).add(key_id)
            if key_id in policy.trusted and key_id != ANONYMOUS:
                trusted_labels.add(int(item.label))
        if len(trusted_labels) == 1:
            label = next(iter(trusted_labels))
            deciders = {str(getattr(i, "key_id", None) or ANONYMOUS) for i in items if int(i.label) == label}
            deciders &= policy.trusted
            counts["trusted"] += 1
            trusted_verdicts.append(Sample(next(i for i in items if int(i.label) == label).text, label))
            counts["rejected_overruled_by_trusted"] += sum(
                1 for i in items if int(i.label) != label)
        elif len(keys_by_label) > 1:  # keys disagree (or trusted keys do): a conflict, left out
            counts["conflicting"] += 1
            counts["rejected_conflicting"] += len(items)
            shown: dict[str, int] = {}
            for i in items:
                name = NAMES[int(i.label)]
                shown[name] = shown.get(name, 0) + int(getattr(i, "count", 1))
            conflict_list.append({**conflict_ref(key, items[0].text), "counts": shown,
                                  "keys": {str(k): len(v) for k, v in keys_by_label.items()}})
            continue
        else:
            label, senders = next(iter(keys_by_label.items()))
            if len(senders) < policy.min_keys:
                counts["rejected_too_few_keys"] += len(items)
                continue
            deciders = set(senders)
            counts["agreed"] += 1
        if key in held_out:
            counts["held_out"] += 1
            continue
        first = next(i for i in items if int(i.label) == label)
        if key in corpus_train:
            if corpus_train[key] == label:
                counts["already_in_corpus"] += 1
                continue
            digest = text_digest(key)
            status = ledger.status.get((digest, label))
            if status is None:  # a new flip: within today's caps, or held for a person
                over = (policy.max_flips and applied_today >= policy.max_flips) or (
                    policy.max_flips_per_key and any(charged.get(k, 0) >= policy.max_flips_per_key
                                                     for k in deciders))
                status = "pending" if over else "applied"
                new_flips.append({"digest": digest, "label": label, "corpus_label": corpus_train[key],
                                  "key_ids": sorted(deciders), "feedback_id": getattr(first, "id", None),
                                  "status": status})
                if status == "applied":
                    applied_today += 1
                    for k in deciders:
                        charged[k] = charged.get(k, 0) + 1
            if status == "pending":
                counts["held_for_approval"] += 1
                continue  # the corpus label stays until a person approves the flip
            counts["relabelled_corpus"] += 1
        else:
            counts["added"] += 1
        chosen[key] = Sample(first.text, label)
    counts["used"] = len(chosen)
    train = [s for s in split.train if normalize(s.text) not in chosen] + list(chosen.values())
    return FeedbackMerge(train, counts, conflict_list, new_flips, trusted_verdicts)


@dataclass
class GateOutcome:
    """What the gate decided, and how to fold the candidate into the best-ever record once it
    is published (only then: a refused or dry-run candidate never raises the bar)."""

    publish: bool
    reason: str
    model_dir: Path
    fingerprint: str
    best: dict[str, dict[str, Any]]
    candidate_report: dict[str, Any]

    def record_best(self, version: int) -> None:
        from antispam.network.decision import write_best

        write_best(self.model_dir, self.fingerprint, self.best, self.candidate_report, version)


def _gate_stage(options: RetrainOptions, model_dir: Path, staged: Any, serving: int | None, split: Split,
                trusted: Sequence[Sample], segmenter: Any, record: RetrainRecord) -> GateOutcome:
    """Score the candidate and the serving version on the fixed gate set and decide (issue 20).

    The gate set is the test split, the held-out everyday messages, the robustness variants
    built from the test split, and the trusted feedback verdicts (which must still hold). Each
    version is judged at its own operating points, as the default policy serves it, unless the
    thresholds are set. The candidate must not be worse, beyond the documented tolerances scaled
    by ``--tolerance``, than the better of the serving version and the best version ever
    published on this gate set (``gate_best.json``). A serving version that cannot be evaluated
    is a refusal: then nothing says the candidate is not worse than what users get now.
    """
    from antispam.network.decision import (
        GATED,
        decision_report,
        format_gate,
        gate_set,
        read_best,
    )
    from antispam.network.decision import gate as decide
    from antispam.network.evaluate import score_version

    thresholds = (options.review_threshold, options.block_threshold)
    gate_texts = gate_set(split.test, trusted)
    fingerprint = gate_texts.fingerprint()
    loaded = staged.load()
    candidate = decision_report(loaded, gate_texts, thresholds, segmenter)
    new_scores = score_version(loaded, split.test, (candidate["thresholds"]["review"],
                                                    candidate["thresholds"]["block"]), segmenter)
    old_report, old_scores, unusable = None, None, None
    if serving is not None:
        try:
            serving_loaded = versions.load_version(model_dir, serving)
            old_report = decision_report(serving_loaded, gate_texts, thresholds, segmenter)
            old_scores = score_version(serving_loaded, split.test, (old_report["thresholds"]["review"],
                                                                    old_report["thresholds"]["block"]), segmenter)
        except versions.VersionError as exc:
            log.warning("serving version %s cannot be evaluated: %s", serving, exc)
            record.serving_unusable = unusable = str(exc)
    best = read_best(model_dir, fingerprint)
    if serving is not None and old_report is not None and not best:
        best = {name: {"value": old_report["figures"].get(name), "version": serving} for name in GATED
                if old_report["figures"].get(name) is not None}
    record.scores = GateScores(
        new=VersionScores.from_evaluation(new_scores, None),
        old=VersionScores.from_evaluation(old_scores, serving) if old_scores else None)
    tolerances = {name: tolerance * options.tolerance for name, (_, tolerance) in GATED.items()}
    result = decide(candidate, old_report, best, serving, tolerances)
    record.gate = {"gate_set": fingerprint, "tolerance_scale": options.tolerance, "figures": result.table,
                   "regression": {"count": len(trusted), "flips": result.flips}}
    record.reports = {"candidate": _report_summary(candidate),
                      "serving": _report_summary(old_report) if old_report else None}
    log.info("gate:\n%s", format_gate(result))
    if unusable is not None:
        return GateOutcome(False, f"serving version {serving} cannot be evaluated ({unusable}): nothing "
                           "says the candidate is not worse than what is served, so nothing was published",
                           model_dir, fingerprint, best, candidate)
    return GateOutcome(result.publish, result.reason if result.publish else
                       result.reason + f"; version {serving} stays in service and nothing was published",
                       model_dir, fingerprint, best, candidate)


def _report_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The parts of a decision report the promotion log keeps (no texts)."""
    return {key: report[key] for key in ("model", "calibrated", "calibration", "thresholds", "figures",
                                          "counts", "variants")}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# The run


def run(options: RetrainOptions) -> RetrainResult:
    """One retrain run; see the module docstring. Raises :class:`LockBusy` (exit code 4) when
    another run holds the model folder, :class:`RetrainError` for bad setup."""
    try:
        options.validate()
    except ValueError as exc:
        raise RetrainError(str(exc)) from None
    model_dir = options.model_dir
    record = RetrainRecord(
        time=_now(), model=options.model, model_dir=str(model_dir), pid=os.getpid(),
        dry_run=options.dry_run, tolerance=options.tolerance, keep=options.keep,
        thresholds=options.thresholds, word2vec=WordVectorsInfo(mode=options.word2vec))
    started = time.perf_counter()
    lock = FileLock(model_dir / LOCK_FILE, what=f"retrain of {options.model} in {model_dir}")
    try:
        lock.acquire()
    except LockBusy as exc:
        record.decision, record.exit_code, record.reason = "busy", EXIT_BUSY, str(exc)
        append_log(options.log_file, record)
        raise
    try:
        try:
            result = _run_locked(options, model_dir, record)
        except BaseException as exc:
            record.decision, record.exit_code = "error", getattr(exc, "exit_code", 1)
            record.version, record.reason = None, f"{type(exc).__name__}: {exc}"
            record.seconds["total"] = round(time.perf_counter() - started, 1)
            append_log(options.log_file, record)
            raise
        record.seconds["total"] = round(time.perf_counter() - started, 1)
        append_log(options.log_file, record)
        return result
    finally:
        lock.release()


@dataclass
class _Prepared:
    """What the data stage hands the others: the fixed split, the feedback merge, the settings and
    the training split (corpus + feedback + everyday messages)."""

    split: Split
    merged: FeedbackMerge
    settings: Any  # antispam.network.train.ClassifierSettings
    train_split: Split
    counts: DataCounts


@contextlib.contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Record the stage's wall time in the promotion record's ``seconds``."""
    clock = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = round(time.perf_counter() - clock, 1)


def _run_locked(options: RetrainOptions, model_dir: Path, record: RetrainRecord) -> RetrainResult:
    """The run's stages in order, each timed into ``record.seconds``: data, word2vec, train,
    export (calibrate and stage), evaluate (the gate) and publish."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from antispam.text import Segmenter

    with _timed(record.seconds, "data"):
        prepared = _prepare_data(options, model_dir, record)
    serving = versions.latest_version(model_dir)
    record.serving_version = serving
    segmenter = Segmenter()
    with _timed(record.seconds, "word2vec"):
        vectors = _word_vectors(options, model_dir, serving, prepared.merged.train, segmenter, record.word2vec)
    with _timed(record.seconds, "train"):
        trained = _train(options, prepared, vectors, segmenter, record)
    with _timed(record.seconds, "export"):
        staged = _stage(options, model_dir, prepared, trained, vectors, segmenter)
    return _gate_and_publish(options, model_dir, record, prepared, staged, serving, segmenter)


def _prepare_data(options: RetrainOptions, model_dir: Path, record: RetrainRecord) -> _Prepared:
    """Clean leftovers, read the split and the feedback, merge them, add the everyday messages."""
    from antispam import data
    from antispam.network.train import ClassifierSettings

    leftovers = versions.clean_leftovers(model_dir)
    if leftovers:
        log.info("removed leftovers of earlier runs: %s", ", ".join(leftovers))
    split = data.load_split(options.data, options.data_dir, progress=options.progress)
    feedback, conflicts, store_stats = _read_feedback(options, record)
    merged = merge_feedback(split, feedback, conflicts, options.feedback_policy(), _flip_ledger(options))
    _record_flips(options, merged)
    # The shipped everyday messages join the training data as `antispam train` adds them.
    settings = (options.classifier or ClassifierSettings()).for_kind(options.model)
    if options.seed is not None:
        settings = dataclasses.replace(settings, seed=options.seed)
    train_split = with_everyday(Split(merged.train, split.validation, split.test, seed=split.seed,
                                      stats=split.stats), settings.everyday_weight)
    record.data = counts = DataCounts(
        corpus_train=len(split.train), validation=len(split.validation), test=len(split.test),
        train=len(merged.train), test_fingerprint=data.fingerprint(split.test),
        everyday=train_split.stats.get("everyday_added_to_train", 0))
    record.feedback = (record.feedback or FeedbackSummary(db=_redacted(options.feedback_db))).with_counts(
        merged.counts, store_stats)
    record.conflicts = merged.conflicts[:CONFLICT_EXAMPLES]
    record.conflict_count = len(merged.conflicts)
    return _Prepared(split, merged, settings, train_split, counts)


def _train(options: RetrainOptions, prepared: _Prepared, vectors: Any, segmenter: Any,
           record: RetrainRecord) -> Any:
    """The classifier, trained and early-stopped as ``antispam train`` does."""
    from antispam.network.train import train_classifier

    try:
        trained = train_classifier(options.model, prepared.train_split, vectors, prepared.settings,
                                   progress=options.progress, segmenter=segmenter)
    except ValueError as exc:
        raise RetrainError(f"cannot train {options.model}: {exc}") from exc
    record.training = TrainingSummary(best_epoch=trained.best_epoch, epochs_run=len(trained.history),
                                      stopped_because=trained.stopped_because,
                                      settings=dataclasses.asdict(prepared.settings))
    return trained


def _stage(options: RetrainOptions, model_dir: Path, prepared: _Prepared, trained: Any, vectors: Any,
           segmenter: Any) -> Any:
    """Calibration and operating points on validation, then the candidate staged (hidden) and checked."""
    from antispam.network.decision import fit_version_decision
    from antispam.network.export import ExportError, stage_version
    from antispam.network.warmup import warmup_texts

    decision = fit_version_decision(trained, prepared.split.validation, segmenter)
    try:
        return stage_version(trained, vectors, model_dir,
                             warmup_texts(prepared.train_split.train, options.warmup_texts, prepared.settings.seed),
                             model_name=options.model, segmenter=segmenter,
                             prefix=versions.RETRAIN_STAGING_PREFIX, decision=decision)
    except ExportError as exc:
        raise RetrainError(f"export failed, nothing published: {exc}") from exc


def _gate_and_publish(options: RetrainOptions, model_dir: Path, record: RetrainRecord, prepared: _Prepared,
                      staged: Any, serving: int | None, segmenter: Any) -> RetrainResult:
    """The gate, then (unless refused or a dry run) publish, fold into the best record and prune.
    The staged folder is removed whatever happens unless it was published."""
    version = None
    pruned: list[int] = []
    try:
        with _timed(record.seconds, "evaluate"):
            outcome = _gate_stage(options, model_dir, staged, serving, prepared.split, prepared.merged.trusted,
                                  segmenter, record)
        publish, reason = outcome.publish, outcome.reason
        decision = "publish" if publish else "reject"
        if publish and not options.dry_run:
            metrics = staged.read_metrics()
            metrics["retrain"] = {
                "feedback": dict(prepared.merged.counts), "word2vec": dataclasses.asdict(record.word2vec),
                "serving_version_at_training": serving, "test_split": prepared.counts.test_fingerprint,
                "gate": {"tolerance": options.tolerance, "reason": reason,
                         "thresholds": dataclasses.asdict(options.thresholds), "figures": record.gate},
                "scores": dataclasses.asdict(record.scores) if record.scores else None,
            }
            staged.write_metrics(metrics)
            version = versions.publish(staged.path, model_dir)
            if record.scores is not None and record.scores.new is not None:
                record.scores.new.version = version
            outcome.record_best(version)
            pruned = versions.prune(model_dir, options.keep, protect=(version, serving))
            log.info("published %s version %d; pruned %s", options.model, version, pruned or "nothing")
        elif options.dry_run:
            reason = f"dry run, nothing published; the gate would {decision}: {reason}"
    finally:
        if version is None:
            staged.discard()

    exit_code = EXIT_PUBLISHED if publish else EXIT_REJECTED
    record.decision, record.exit_code, record.version = decision, exit_code, version
    record.reason, record.pruned = reason, pruned
    return RetrainResult(exit_code, decision, version, serving, reason, record)


def _redacted(target: str | None) -> str | None:
    """The store as the promotion log may name it: a PostgreSQL URL without its password."""
    from antispam.feedback import redact

    return redact(target) if target else target


def _read_feedback(options: RetrainOptions, record: RetrainRecord) -> tuple[list[Any], list[Any], dict[str, Any]]:
    from antispam.feedback_stores import exists

    record.feedback = FeedbackSummary(db=_redacted(options.feedback_db))
    if not options.feedback_db:
        return [], [], {}
    if not exists(options.feedback_db):
        if options.feedback_required:
            raise RetrainError(f"no feedback store at {options.feedback_db} (from --feedback-db); "
                               "leave the flag out to train on the corpus alone")
        log.info("no feedback store at %s yet: training on the corpus alone", options.feedback_db)
        record.feedback.missing = True
        return [], [], {}
    from antispam.feedback import FeedbackError

    store = _feedback_store(options)
    try:
        if options.feedback_retention_days > 0 and not options.dry_run:
            record.feedback.pruned_by_retention = store.prune(options.feedback_retention_days)
        # Every row, conflicting or not: merge_feedback decides with the key ids (FeedbackPolicy).
        return store.samples(include_conflicts=True), [], store.stats()
    except FeedbackError as exc:
        raise RetrainError(str(exc)) from exc
    finally:
        store.close()


def _feedback_store(options: RetrainOptions) -> Any:
    """The configured feedback store, SQLite file or PostgreSQL (issue 23: retrain reads whichever
    the service writes), when there is one (else None)."""
    from antispam.feedback import FeedbackError
    from antispam.feedback_stores import exists, open_store

    if not options.feedback_db or not exists(options.feedback_db):
        return None
    try:
        return open_store(options.feedback_db)
    except FeedbackError as exc:
        raise RetrainError(str(exc)) from exc


def _flip_ledger(options: RetrainOptions) -> FlipLedger:
    """What earlier runs decided about label flips (issue 21); empty without a store."""
    store = _feedback_store(options)
    if store is None:
        return FlipLedger()
    from antispam.feedback import FeedbackError

    try:
        return FlipLedger.from_flips(store.flips())
    except FeedbackError as exc:
        raise RetrainError(str(exc)) from exc
    finally:
        store.close()


def _record_flips(options: RetrainOptions, merged: FeedbackMerge) -> None:
    """Write this run's new flip decisions to the ledger (not in a dry run, which changes
    nothing); the held ones are then listed by ``antispam feedback approve``."""
    if options.dry_run or not merged.flips:
        return
    store = _feedback_store(options)
    if store is None:
        return
    from antispam.feedback import FeedbackError

    try:
        store.record_flips(merged.flips)
    except FeedbackError as exc:
        raise RetrainError(str(exc)) from exc
    finally:
        store.close()
    held = sum(1 for f in merged.flips if f["status"] == "pending")
    if held:
        log.warning("%d corpus label flips are over the cap and wait for a person: antispam feedback "
                    "approve lists them", held)


def _word_vectors(options: RetrainOptions, model_dir: Path, serving: int | None,
                  train: Sequence[Sample], segmenter: Any, info: WordVectorsInfo) -> Any:
    if options.word2vec == "reuse" and serving is not None:
        try:
            vectors = versions.load_assets(model_dir, serving).vectors
        except versions.VersionError as exc:
            log.warning("cannot reuse the vectors of version %s (%s): training new ones", serving, exc)
            info.origin = f"trained (version {serving}'s vectors unusable: {exc})"
        else:
            info.origin, info.words = f"reused from version {serving}", len(vectors)
            return vectors
    else:
        info.origin = "trained" if options.word2vec == "retrain" else "trained (no version to reuse)"
    from antispam.word2vec.train import Word2VecSettings, train_word2vec

    settings = options.word2vec_settings or Word2VecSettings()
    tokens = [segmenter.tokenize(s.text) for s in train]
    vectors, report = train_word2vec(tokens, settings, progress=options.progress)
    info.words = len(vectors)
    info.train_seconds, info.final_loss = report.get("train_seconds"), report.get("final_loss")
    return vectors
