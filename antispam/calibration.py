"""Calibration of a version's folded message score into a probability (issue 20).

A network's folded score (:meth:`antispam.features.Plan.fold`) ranks messages well but its scale
is its own: the CNN is over-confident, the RNN under-confident, and every nightly seed lands
elsewhere, so a fixed 0.5 / 0.9 meant something different for every version. The trainer fits a
monotone map from that score to the observed spam frequency on the validation split and records it
in the version's ``preprocessing.json`` next to the windowing record; every path that folds a
version's rows (local, gRPC, REST, evaluate, retrain) applies it right after the fold
(:class:`antispam.features.Plan`), so ``spam_probability`` means the same on every path.

Two maps are fitted and the one with the lower cross-validated log loss on the validation split is
kept; the cross-validated expected calibration error (ECE, 10 bins) of both is recorded beside it.
Log loss decides because it is a proper scoring rule: it rewards a map for being calibrated *and*
for keeping the scores apart, where binned ECE can be gamed by a map that flattens (on the CNN's
validation split isotonic had the lower ECE, 0.012 vs 0.015, and the worse log loss, 0.141 vs
0.128: its end blocks say 0 and 1 outright).

- **Platt** (``sigmoid(a · logit(s) + b)``): two parameters, strictly increasing, so the ranking of
  messages and every explanation's log-odds deltas (scaled by ``a``) survive; cannot bend.
- **Isotonic** (pool-adjacent-violators, linearly interpolated between block centres): bends to any
  monotone shape, but is flat inside a block (ties) and over-fits small validation sets.

Plain numpy, no TensorFlow: the serving process applies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

METHODS = ("platt", "isotonic")
ECE_BINS = 10
# Scores are clipped to this before the logit: mean_odds folds reach 1 - 1e-12, and a logit of
# ±28 is as far as float64 probabilities distinguish anything anyway.
_TINY = 1e-12


def logit(p: np.ndarray | Sequence[float]) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _TINY, 1.0 - _TINY)
    return np.asarray(np.log(p) - np.log1p(-p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64))))


@dataclass(frozen=True)
class Calibration:
    """A monotone map from a version's folded score to a calibrated spam probability.

    ``platt``: ``params = (a, b)``. ``isotonic``: ``knots_x`` (folded scores, increasing) and
    ``knots_y`` (probabilities, non-decreasing), interpolated linearly, flat outside. ``report``
    holds how it was chosen (cross-validated figures of both methods, counts); it is recorded but
    never changes what :meth:`apply` does.
    """

    method: str
    params: tuple[float, ...] = ()
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    report: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.method == "platt":
            if len(self.params) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                and math.isfinite(v) for v in self.params):
                raise ValueError(f"platt calibration needs two finite numbers (a, b), got {self.params!r}")
            if self.params[0] <= 0:
                raise ValueError(f"platt calibration must be increasing (a > 0), got a = {self.params[0]}")
        else:
            x, y = np.asarray(self.knots_x, np.float64), np.asarray(self.knots_y, np.float64)
            if x.ndim != 1 or len(x) < 1 or x.shape != y.shape:
                raise ValueError("isotonic calibration needs as many knots_y as knots_x (at least one)")
            if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
                raise ValueError("isotonic knots must be finite")
            if np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
                raise ValueError("isotonic knots_x must increase and knots_y must not decrease")
            if np.any((x < 0) | (x > 1) | (y < 0) | (y > 1)):
                raise ValueError("isotonic knots must lie in [0, 1]")

    def apply(self, scores: np.ndarray | Sequence[float]) -> np.ndarray:
        """Calibrated probabilities (float64) of folded scores."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.method == "platt":
            a, b = self.params
            return sigmoid(a * logit(scores) + b)
        return np.asarray(np.interp(scores, self.knots_x, self.knots_y))

    def to_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        if self.method == "platt":
            out["a"], out["b"] = self.params
        else:
            out["knots_x"], out["knots_y"] = list(self.knots_x), list(self.knots_y)
        if self.report:
            out["report"] = dict(self.report)
        return out

    @classmethod
    def from_record(cls, record: Any) -> "Calibration":
        """The map a version records; ValueError naming the problem for a bad record (such a
        version is refused rather than served with probabilities that mean something else)."""
        if not isinstance(record, dict):
            raise ValueError("calibration must be a JSON object")
        method = record.get("method")
        report = record.get("report") or {}
        if method == "platt":
            a, b = record.get("a"), record.get("b")
            return cls("platt", params=(a, b), report=report)  # type: ignore[arg-type]
        if method == "isotonic":
            xs, ys = record.get("knots_x"), record.get("knots_y")
            if not isinstance(xs, list) or not isinstance(ys, list):
                raise ValueError("isotonic calibration needs knots_x and knots_y lists")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in [*xs, *ys]):
                raise ValueError("isotonic knots must be numbers")
            return cls("isotonic", knots_x=tuple(float(v) for v in xs), knots_y=tuple(float(v) for v in ys),
                       report=report)
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")


def expected_calibration_error(probabilities: np.ndarray | Sequence[float], is_spam: np.ndarray | Sequence[bool],
                               bins: int = ECE_BINS) -> float | None:
    """ECE over ``bins`` equal-width bins of the spam probability: the count-weighted mean of
    |mean probability − spam frequency| per bin. None for no messages."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(is_spam, dtype=np.float64)
    if p.shape != y.shape:
        raise ValueError(f"{len(p)} probabilities but {len(y)} labels")
    if not len(p):
        return None
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if n:
            total += n * abs(float(p[mask].mean()) - float(y[mask].mean()))
    return total / len(p)


def log_loss(probabilities: np.ndarray, is_spam: np.ndarray) -> float:
    p = np.clip(np.asarray(probabilities, np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(is_spam, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_platt(scores: np.ndarray | Sequence[float], is_spam: np.ndarray | Sequence[bool],
              iterations: int = 100) -> Calibration:
    """Logistic regression of the label on ``logit(score)`` by Newton's method, with Platt's
    smoothed targets ((n+ + 1)/(n+ + 2), 1/(n- + 2)) so a separable validation set does not drive
    the slope to infinity."""
    z = logit(scores)
    y = np.asarray(is_spam, dtype=np.float64)
    if z.shape != y.shape or not len(z):
        raise ValueError("platt needs one label per score and at least one score")
    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    target = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    def loss(a: float, b: float) -> float:
        q = np.clip(sigmoid(a * z + b), 1e-15, 1 - 1e-15)
        return float(-np.sum(target * np.log(q) + (1 - target) * np.log(1 - q)))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iterations):
        p = sigmoid(a * z + b)
        w = np.maximum(p * (1 - p), 1e-12)
        grad = np.array([np.sum((p - target) * z), np.sum(p - target)])
        hess = np.array([[np.sum(w * z * z), np.sum(w * z)], [np.sum(w * z), np.sum(w)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        # Newton with step halving: a full step from a far start can overshoot on separable data.
        scale = 1.0
        while scale > 1e-6:
            trial = loss(a - scale * step[0], b - scale * step[1])
            if trial <= current:
                break
            scale /= 2
        else:
            break
        a, b, current = a - scale * step[0], b - scale * step[1], trial
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError("platt fit diverged")
        if np.max(np.abs(scale * step)) < 1e-10:
            break
    if a <= 0:  # a score that ranks backwards on validation: keep the order, use the base rate
        a, b = 1e-6, float(logit(np.array([y.mean()]))[0])
    return Calibration("platt", params=(float(a), float(b)))


def fit_isotonic(scores: np.ndarray | Sequence[float], is_spam: np.ndarray | Sequence[bool]) -> Calibration:
    """Pool-adjacent-violators on the sorted scores; knots at each block's mean score."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_spam, dtype=np.float64)
    if s.shape != y.shape or not len(s):
        raise ValueError("isotonic needs one label per score and at least one score")
    order = np.argsort(s, kind="mergesort")
    s, y = s[order], y[order]
    # Equal scores are one point (their mean label), so ties never straddle a block edge.
    uniq, start = np.unique(s, return_index=True)
    counts = np.diff(np.append(start, len(s))).astype(np.float64)
    sums = np.add.reduceat(y, start)
    blocks: list[list[float]] = []  # [sum_y, count, sum_x]
    for x, n, total in zip(uniq, counts, sums):
        blocks.append([total, n, x * n])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            t, c, sx = blocks.pop()
            blocks[-1][0] += t
            blocks[-1][1] += c
            blocks[-1][2] += sx
    xs = [sx / c for _, c, sx in blocks]
    ys = [t / c for t, c, _ in blocks]
    # Knots must strictly increase in x (block means do); keep y within [0, 1].
    return Calibration("isotonic", knots_x=tuple(float(v) for v in xs),
                       knots_y=tuple(float(min(1.0, max(0.0, v))) for v in ys))


FITTERS = {"platt": fit_platt, "isotonic": fit_isotonic}


def cross_validated(scores: np.ndarray, is_spam: np.ndarray, method: str, folds: int = 5,
                    seed: int = 0) -> dict[str, float | None]:
    """ECE and log loss of ``method`` fitted on k−1 folds and applied to the held-out fold."""
    scores, is_spam = np.asarray(scores, np.float64), np.asarray(is_spam, bool)
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(scores)) % folds
    out = np.empty(len(scores))
    for k in range(folds):
        test = fold_of == k
        out[test] = FITTERS[method](scores[~test], is_spam[~test]).apply(scores[test])
    return {"ece": expected_calibration_error(out, is_spam), "log_loss": log_loss(out, is_spam)}


def choose(scores: np.ndarray | Sequence[float], is_spam: np.ndarray | Sequence[bool], folds: int = 5,
           seed: int = 0) -> Calibration:
    """Fit both maps on all of ``scores`` and keep the one with the lower cross-validated log loss
    (Platt on a tie: smooth and rank-preserving). The report records both methods' ECE and log
    loss and the uncalibrated ECE."""
    scores, is_spam = np.asarray(scores, np.float64), np.asarray(is_spam, bool)
    if is_spam.all() or not is_spam.any():
        raise ValueError(f"calibration needs messages of both classes, got {len(scores)} "
                         f"({int(is_spam.sum())} spam)")
    if min(int(is_spam.sum()), int((~is_spam).sum())) < 2 * folds:
        # Too few to cross-validate (a toy validation split): the two-parameter map, said so.
        fitted = fit_platt(scores, is_spam)
        return Calibration("platt", fitted.params, report={
            "fitted_on": "validation", "count": int(len(scores)), "spam": int(is_spam.sum()),
            "uncalibrated_ece": expected_calibration_error(scores, is_spam), "cross_validated": None,
            "chosen": "platt", "why": f"fewer than {2 * folds} messages of a class: no cross-validation"})
    figures = {method: cross_validated(scores, is_spam, method, folds, seed) for method in METHODS}
    best = min(METHODS, key=lambda m: (figures[m]["log_loss"] or 0.0, METHODS.index(m)))
    fitted = FITTERS[best](scores, is_spam)
    report = {"fitted_on": "validation", "count": int(len(scores)), "spam": int(is_spam.sum()),
              "folds": folds, "uncalibrated_ece": expected_calibration_error(scores, is_spam),
              "cross_validated": figures, "chosen": best}
    return Calibration(fitted.method, fitted.params, fitted.knots_x, fitted.knots_y, report)
