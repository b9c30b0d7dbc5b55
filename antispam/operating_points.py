"""Operating points per version (issue 20): where ``block`` and ``review`` start for this model.

``block`` is acted on without a person, so it is set for a target *precision* (default 0.99: at
most one ordinary message in a hundred blocked messages); ``review`` sends a text to a person, so it
is set for a target *recall* (default 0.95 of spam reaches at least review). Both are chosen by the
trainer on the validation split, on the calibrated probabilities (:mod:`antispam.calibration`),
and recorded in the version's ``preprocessing.json`` with the precision, recall and flagged share
each gave there. The default policy uses the serving version's points, so a new version brings its
own thresholds and the decision keeps its meaning across versions and seeds; a policy that sets
thresholds keeps its own (:mod:`antispam.policies`). Plain numpy: the service reads these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from antispam.calibration import Calibration, choose

TARGET_BLOCK_PRECISION = 0.99
TARGET_REVIEW_RECALL = 0.95
# The block threshold must hold its precision over every tail of at least this many messages
# above it, not only at one lucky cut: a single ordinary message at the very top would otherwise
# make no threshold qualify, and a dip just above the cut would go unseen.
MIN_TAIL = 20
# Thresholds of versions that record no points (trained before issue 20): the service's old
# constants, which is what those versions were served with.
LEGACY_REVIEW, LEGACY_BLOCK = 0.5, 0.9


@dataclass(frozen=True)
class Point:
    """One threshold and what it gave on the messages it was chosen on."""

    threshold: float
    target: float  # block: the precision aimed at; review: the recall aimed at
    precision: float
    recall: float
    flagged_share: float  # share of all messages at or above the threshold
    pass_share: float  # share of ordinary (pass) messages at or above it

    def to_record(self) -> dict[str, float]:
        return {"threshold": self.threshold, "target": self.target, "precision": self.precision,
                "recall": self.recall, "flagged_share": self.flagged_share, "pass_share": self.pass_share}

    @classmethod
    def from_record(cls, record: Any, name: str) -> "Point":
        if not isinstance(record, dict):
            raise ValueError(f"operating point {name} must be a JSON object")
        values = {}
        for key in ("threshold", "target", "precision", "recall", "flagged_share", "pass_share"):
            value = record.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"operating point {name}.{key} must be a number in [0, 1], got {value!r}")
            values[key] = float(value)
        return cls(**values)


@dataclass(frozen=True)
class OperatingPoints:
    block: Point
    review: Point
    fitted_on: str = "validation"
    count: int = 0

    def __post_init__(self) -> None:
        if self.review.threshold > self.block.threshold:
            raise ValueError(f"review threshold {self.review.threshold} is above the block threshold "
                             f"{self.block.threshold}")

    def to_record(self) -> dict[str, Any]:
        return {"block": self.block.to_record(), "review": self.review.to_record(),
                "fitted_on": self.fitted_on, "count": self.count}

    @classmethod
    def from_record(cls, record: Any) -> "OperatingPoints":
        if not isinstance(record, dict):
            raise ValueError("operating_points must be a JSON object")
        count = record.get("count", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"operating_points.count must be a whole number, got {count!r}")
        fitted_on = record.get("fitted_on", "validation")
        if not isinstance(fitted_on, str):
            raise ValueError("operating_points.fitted_on must be a string")
        return cls(Point.from_record(record.get("block"), "block"),
                   Point.from_record(record.get("review"), "review"), fitted_on, count)


def _point(probs: np.ndarray, is_spam: np.ndarray, threshold: float, target: float) -> Point:
    flagged = probs >= threshold
    tp = int(np.sum(flagged & is_spam))
    n_flagged, n_spam, n_pass = int(flagged.sum()), int(is_spam.sum()), int((~is_spam).sum())
    return Point(threshold=float(threshold), target=float(target),
                 precision=tp / n_flagged if n_flagged else 1.0,
                 recall=tp / n_spam if n_spam else 0.0,
                 flagged_share=n_flagged / len(probs) if len(probs) else 0.0,
                 pass_share=int(np.sum(flagged & ~is_spam)) / n_pass if n_pass else 0.0)


def block_threshold(probs: np.ndarray, is_spam: np.ndarray, target_precision: float,
                    min_tail: int = MIN_TAIL) -> float:
    """The lowest threshold whose every tail of ``min_tail``+ messages above it keeps
    ``target_precision``; above the highest score (nothing blocked) if none does. On a split with
    fewer than ten times ``min_tail`` spam messages the tail shrinks to a tenth of them."""
    min_tail = max(1, min(min_tail, int(np.sum(is_spam)) // 10))
    order = np.argsort(-probs, kind="mergesort")
    p_sorted, spam_sorted = probs[order], is_spam[order]
    tp = np.cumsum(spam_sorted)
    n = np.arange(1, len(probs) + 1)
    # Cut only where the score changes: messages with equal scores are blocked together.
    last_of_run = np.append(p_sorted[1:] != p_sorted[:-1], True)
    ok = (tp / n >= target_precision) | (n < min_tail)
    best = None
    for i in range(len(probs)):
        if not ok[i]:
            break
        if last_of_run[i] and n[i] >= min_tail:
            best = float(p_sorted[i])
    if best is None:
        top = float(p_sorted[0]) if len(p_sorted) else 1.0
        return float(min(1.0, np.nextafter(top, 2.0)))
    return best


def review_threshold(probs: np.ndarray, is_spam: np.ndarray, target_recall: float) -> float:
    """The highest threshold at which at least ``target_recall`` of the spam is at or above it."""
    spam_scores = np.sort(probs[is_spam])[::-1]
    if not len(spam_scores):
        return LEGACY_REVIEW
    k = max(1, math.ceil(target_recall * len(spam_scores) - 1e-9))
    return float(spam_scores[k - 1])


def choose_points(probs: np.ndarray | Sequence[float], is_spam: np.ndarray | Sequence[bool], *,
                  target_precision: float = TARGET_BLOCK_PRECISION,
                  target_recall: float = TARGET_REVIEW_RECALL,
                  built_probs: np.ndarray | Sequence[float] = (),
                  built_is_spam: np.ndarray | Sequence[bool] = ()) -> OperatingPoints:
    """Review for ``target_recall`` of the messages, block for ``target_precision`` of the
    messages together with ``built`` ones (never below review).

    ``built``: whole messages built from the same split the way users write them (ordinary
    messages joined, ads behind ordinary sentences; the trainer's selection messages). Blocking
    acts without a person, so its precision must also hold on long joined ordinary texts; the
    review point keeps the recall target on the split's own messages, so the queue is sized for
    the traffic as it is. Decided on validation (issue 20's round: with the built messages the
    RNN's validation block precision went 0.990 → 0.994 and joined ordinary texts blocked 2.3% →
    1.7%, for block recall 0.896 → 0.883).
    """
    for name, value in (("target precision", target_precision), ("target recall", target_recall)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {value}")
    probs, is_spam = np.asarray(probs, np.float64), np.asarray(is_spam, bool)
    built_p, built_y = np.asarray(built_probs, np.float64), np.asarray(built_is_spam, bool)
    all_p, all_y = np.concatenate([probs, built_p]), np.concatenate([is_spam, built_y])
    block = block_threshold(all_p, all_y, target_precision)
    review = min(review_threshold(probs, is_spam, target_recall), block)
    fitted_on = "validation" if not len(built_p) else f"validation (block: + {len(built_p)} built messages)"
    return OperatingPoints(_point(probs, is_spam, block, target_precision),
                           _point(probs, is_spam, review, target_recall), fitted_on, int(len(probs)))


def fit_decision(raw_scores: np.ndarray | Sequence[float], is_spam: np.ndarray | Sequence[bool], *,
                 target_precision: float = TARGET_BLOCK_PRECISION,
                 target_recall: float = TARGET_REVIEW_RECALL,
                 built_raw: np.ndarray | Sequence[float] = (),
                 built_is_spam: np.ndarray | Sequence[bool] = ()) -> tuple[Calibration, OperatingPoints]:
    """What the trainer records for a version: the calibration fitted on the folded validation
    scores (the split's own messages only), then the operating points chosen on the calibrated
    ones (:func:`choose_points`; ``built``: messages built from the validation split)."""
    raw, labels = np.asarray(raw_scores, np.float64), np.asarray(is_spam, bool)
    calibration = choose(raw, labels)
    built = np.asarray(built_raw, np.float64)
    points = choose_points(calibration.apply(raw), labels, target_precision=target_precision,
                           target_recall=target_recall,
                           built_probs=calibration.apply(built) if len(built) else built,
                           built_is_spam=built_is_spam)
    return calibration, points


def thresholds_of(points: OperatingPoints | None) -> tuple[float, float]:
    """(review, block) the default policy applies for a version with ``points`` (None: legacy)."""
    if points is None:
        return LEGACY_REVIEW, LEGACY_BLOCK
    return points.review.threshold, points.block.threshold


def check_thresholds(review: float | None, block: float | None) -> str | None:
    """The one rule for a pair of thresholds (either may be unset: the version's point): each in
    [0, 1] and review <= block when both are set. The problem, or None."""
    for name, value in (("review_threshold", review), ("block_threshold", block)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            return f"{name} must be a number in [0, 1], got {value!r}"
    if review is not None and block is not None and review > block:
        return f"review_threshold ({review}) must not be above block_threshold ({block})"
    return None


def resolve_thresholds(review: float | None, block: float | None,
                       points: OperatingPoints | None) -> tuple[float, float]:
    """(review, block) for a policy: what it sets, the version's points for what it leaves unset
    (legacy constants for a version without points). An unset threshold yields to a set one, so
    review <= block always holds."""
    version_review, version_block = thresholds_of(points)
    r = review if review is not None else version_review
    b = block if block is not None else version_block
    if review is None:
        r = min(r, b)
    if block is None:
        b = max(b, r)
    return r, b


def describe(points: OperatingPoints | None) -> Mapping[str, Any] | None:
    return points.to_record() if points is not None else None
