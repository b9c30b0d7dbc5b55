"""The retrain job's record: what one run did and why, as typed dataclasses, and the promotion log.

:class:`RetrainRecord` is built up as :func:`antispam.retrain.run` goes and appended, whatever
the outcome, as one JSON line to ``MODEL_BASE/MODEL/promotion.jsonl`` (docs/contracts.md#retrain-policy).
The JSON keys are a contract with the readers of that log (operators' ``tail | json.tool``,
:func:`read_log`, dashboards): keys are added, never renamed or removed. Every line carries
every key; a value not known when the run ended (a busy run never trained) is ``null``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


@dataclass
class Thresholds:
    """The review and block thresholds the scores were computed at; None: each version's own
    operating points (what the service's default policy applies, issue 20)."""

    review: float | None
    block: float | None


@dataclass
class WordVectorsInfo:
    mode: str  # "reuse" | "retrain" (the flag)
    origin: str | None = None  # what happened, in words: "reused from version 3", "trained", ...
    words: int | None = None
    train_seconds: float | None = None  # when trained
    final_loss: float | None = None  # when trained


@dataclass
class DataCounts:
    corpus_train: int  # training messages of the corpus split
    validation: int
    test: int
    train: int  # training messages with feedback merged (before the everyday messages)
    test_fingerprint: str  # the fixed yardstick every version is compared on
    everyday: int  # everyday messages added to training


@dataclass
class FeedbackSummary:
    """The feedback store and what became of its verdicts (:func:`antispam.retrain.merge_feedback`)."""

    db: str | None  # None: no feedback (--no-feedback)
    missing: bool = False  # the default or env store does not exist yet
    store: dict[str, Any] = field(default_factory=dict)  # the store's own counts
    distinct: int = 0
    reports: int = 0
    used: int = 0
    added: int = 0
    relabelled_corpus: int = 0
    already_in_corpus: int = 0
    held_out: int = 0
    empty: int = 0
    conflicting: int = 0
    # Issue 11 (FeedbackPolicy): texts let in by a trusted key, or by min_keys agreeing keys, and
    # the rows refused, by reason (rejected_*; also together in ``rejected``).
    trusted: int = 0
    agreed: int = 0
    min_keys: int | None = None
    rejected_too_few_keys: int = 0
    rejected_conflicting: int = 0
    rejected_overruled_by_trusted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> rows
    pruned_by_retention: int = 0  # rows older than the retention deleted before the merge
    # Issue 21: corpus label flips over the per-night or per-key cap, held for a person
    # (antispam feedback approve); they stay out of this run.
    held_for_approval: int = 0

    def with_counts(self, counts: Mapping[str, int], store: dict[str, Any]) -> FeedbackSummary:
        """A copy with the merge's counts (names as above) and the store's own counts."""
        unknown = set(counts) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown feedback counts {sorted(unknown)}")
        values: dict[str, Any] = dict(counts)
        values["rejected"] = {name[len("rejected_"):]: int(value) for name, value in counts.items()
                              if name.startswith("rejected_")}
        return dataclasses.replace(self, store=store, **values)


@dataclass
class TrainingSummary:
    best_epoch: int
    epochs_run: int
    stopped_because: str
    settings: dict[str, Any]  # antispam.network.train.ClassifierSettings as a dict


@dataclass
class VersionScores:
    """One version's figures on the test split through the serving path."""

    version: int | None  # the candidate's: its number once published, else None
    f1: float  # spam F1 at p >= 0.5: what the gate compares
    accuracy: float
    precision: float
    recall: float
    roc_auc: float | None
    count: int
    confusion: dict[str, int]
    at_thresholds: dict[str, Any]  # the same figures at the service's review and block thresholds

    @classmethod
    def from_evaluation(cls, scores: dict[str, Any], version: int | None) -> VersionScores:
        """From :func:`antispam.network.evaluate.score_version`'s result."""
        return cls(version=version, f1=scores["f1"], accuracy=scores["accuracy"], precision=scores["precision"],
                   recall=scores["recall"], roc_auc=scores.get("roc_auc"), count=scores["count"],
                   confusion=scores["confusion"], at_thresholds=scores.get("at_thresholds", {}))


@dataclass
class GateScores:
    new: VersionScores | None = None  # the candidate
    old: VersionScores | None = None  # the version serving when the run started, if it could be scored


@dataclass
class RetrainRecord:
    """One run of ``antispam retrain``: one line of the promotion log."""

    time: str  # UTC, ISO 8601, when the run started
    model: str
    model_dir: str
    pid: int
    dry_run: bool
    tolerance: float
    keep: int
    thresholds: Thresholds
    word2vec: WordVectorsInfo
    decision: str | None = None  # "publish" | "reject" | "busy" | "error"
    exit_code: int | None = None
    reason: str | None = None
    version: int | None = None  # the version published by this run
    serving_version: int | None = None  # the version serving when the run started
    serving_unusable: str | None = None  # why the serving version could not be scored
    # Issue 20: the gate on what users feel. ``gate`` maps each gated figure to candidate, serving,
    # best ever, reference, tolerance and ok; ``reports`` holds the decision reports (figures and
    # counts) of the candidate and the serving version on the fixed gate set.
    gate: dict[str, Any] | None = None
    reports: dict[str, Any] | None = None
    data: DataCounts | None = None
    feedback: FeedbackSummary | None = None
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # the first few
    conflict_count: int = 0
    training: TrainingSummary | None = None
    scores: GateScores = field(default_factory=GateScores)
    pruned: list[int] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, and "total"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def append_log(path: str | os.PathLike[str], record: RetrainRecord | dict[str, Any]) -> None:
    """Append one JSON line: one ``write`` on an ``O_APPEND`` descriptor, then fsync.

    POSIX appends of a single write land whole at the end of the file, so concurrent writers
    (a busy run logging its refusal while the holder logs its result) never interleave lines.
    """
    payload = record.to_dict() if isinstance(record, RetrainRecord) else record
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path} ({written} of {len(line)} bytes): disk full?")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every line of a promotion log as a dict (old lines may lack keys added since)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
