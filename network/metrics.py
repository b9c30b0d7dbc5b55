"""Scores of a binary spam classifier, in plain numpy.

The trainer (validation, test), :mod:`antispam.network.evaluate` and the TF-IDF baselines all
report through :func:`binary_scores`, so every figure in a report means the same thing. Spam
(label 0, output column 0) is the positive class throughout: precision, recall and F1 are about
catching spam. Plain numpy keeps scikit-learn a development-only dependency.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from antispam.labels import PASS, SPAM


def roc_auc(is_spam: np.ndarray, spam_probability: np.ndarray) -> float | None:
    """Area under the ROC curve via the rank-sum (Mann-Whitney U) identity, ties averaged.

    ``None`` when only one class is present: the area is undefined and a number would mislead.
    """
    is_spam = np.asarray(is_spam, dtype=bool)
    scores = np.asarray(spam_probability, dtype=np.float64)
    n_pos, n_neg = int(is_spam.sum()), int((~is_spam).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average ranks over runs of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    u = ranks[is_spam].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def scores_at(labels: np.ndarray, spam_probability: np.ndarray, threshold: float) -> dict[str, Any]:
    """Confusion counts and spam precision/recall/F1 when ``p(spam) >= threshold`` flags spam."""
    labels = np.asarray(labels)
    is_spam = labels == SPAM
    flagged = np.asarray(spam_probability) >= threshold
    tp = int(np.sum(flagged & is_spam))
    fp = int(np.sum(flagged & ~is_spam))
    fn = int(np.sum(~flagged & is_spam))
    tn = int(np.sum(~flagged & ~is_spam))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    total = tp + fp + fn + tn
    return {
        "threshold": float(threshold),
        "accuracy": (tp + tn) / total if total else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "flagged": tp + fp,
        # False positive rate: the share of legitimate messages that would be held or blocked.
        "false_positive_rate": fp / (fp + tn) if fp + tn else 0.0,
        "confusion": {"spam_as_spam": tp, "spam_as_pass": fn, "pass_as_spam": fp, "pass_as_pass": tn},
    }


def binary_scores(labels: Sequence[int] | np.ndarray, spam_probability: Sequence[float] | np.ndarray,
                  thresholds: Sequence[float] = (0.5, 0.9), loss: float | None = None) -> dict[str, Any]:
    """The report of one model on one set of labelled messages.

    Top-level accuracy/precision/recall/F1 use the argmax decision (``p(spam) >= 0.5``, the
    model's ``classes`` output); ``at_thresholds`` repeats them at the service's review and
    block thresholds, because that is where a wrong call costs a user.
    """
    labels = np.asarray(labels)
    probs = np.asarray(spam_probability, dtype=np.float64)
    if labels.shape != probs.shape:
        raise ValueError(f"{labels.shape[0]} labels but {probs.shape[0]} scores")
    unknown = set(np.unique(labels).tolist()) - {SPAM, PASS}
    if unknown:
        raise ValueError(f"labels must be {SPAM} (spam) or {PASS} (pass), got {sorted(unknown)}")
    at_half = scores_at(labels, probs, 0.5)
    result: dict[str, Any] = {
        "count": int(labels.size),
        "counts": {"spam": int(np.sum(labels == SPAM)), "pass": int(np.sum(labels == PASS))},
        "accuracy": at_half["accuracy"],
        "precision": at_half["precision"],
        "recall": at_half["recall"],
        "f1": at_half["f1"],
        "roc_auc": roc_auc(labels == SPAM, probs),
        "confusion": at_half["confusion"],
        "at_thresholds": {f"{t:g}": scores_at(labels, probs, t) for t in thresholds},
    }
    if loss is not None:
        result["loss"] = float(loss)
    return result
