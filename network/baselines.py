"""TF-IDF + logistic regression baselines on the same split the networks use.

docs/contracts.md#text-pipeline names these as the honest bar: a bag of jieba tokens and a bag of character
1–3-grams of the normalized text, both from :mod:`antispam.text`, trained on the training split
with the regularization picked on the validation split, and scored once on the
test split. A third row uses only the first 20 tokens, which is all the
networks see, so a reader can tell the truncation's cost from the model's.

scikit-learn is a development dependency (``pip install -e .[dev]``): the service never needs it.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from antispam.data import Split
from antispam.errors import UserError
from antispam.features import MAX_LEN
from antispam.labels import SPAM
from antispam.network.metrics import binary_scores
from antispam.text import Segmenter, default_segmenter, normalize


def _sklearn() -> tuple[Any, Any]:
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UserError("the TF-IDF baselines need scikit-learn: pip install -e '.[dev]'") from exc
    return TfidfVectorizer, LogisticRegression


def _identity(tokens: list[str]) -> list[str]:
    return tokens


# Inverse regularization strengths tried; the one with the best validation F1 is kept. With
# scikit-learn's default (C=1) the baselines underfit this corpus by one to two points, and a
# weak baseline would flatter the networks.
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)


def _fit_score(vectorizer: Any, train: tuple[Sequence[Any], np.ndarray],
               validation: tuple[Sequence[Any], np.ndarray], test: tuple[Sequence[Any], np.ndarray],
               thresholds: Sequence[float]) -> dict[str, Any]:
    """Fit TF-IDF once, pick C on validation, score the chosen model once on test."""
    _, LogisticRegression = _sklearn()
    started = time.perf_counter()
    train_x = vectorizer.fit_transform(train[0])
    validation_x, test_x = vectorizer.transform(validation[0]), vectorizer.transform(test[0])
    best: tuple[float, float, Any] | None = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=3000).fit(train_x, train[1])
        column = list(model.classes_).index(SPAM)
        f1 = binary_scores(validation[1], model.predict_proba(validation_x)[:, column])["f1"]
        if best is None or f1 > best[0]:
            best = (f1, c, model)
    assert best is not None
    validation_f1, c, model = best
    column = list(model.classes_).index(SPAM)
    scores = binary_scores(test[1], model.predict_proba(test_x)[:, column], thresholds)
    scores.update({
        "C": c,
        "validation_f1": validation_f1,
        "features": len(vectorizer.vocabulary_),
        "wall_seconds": round(time.perf_counter() - started, 2),
    })
    return scores


def tfidf_baselines(split: Split, segmenter: Segmenter | None = None,
                    thresholds: Sequence[float] = (0.5, 0.9)) -> dict[str, dict[str, Any]]:
    """Train each baseline on ``split.train`` and score it on ``split.test``."""
    TfidfVectorizer, _ = _sklearn()
    segmenter = segmenter or default_segmenter()
    parts = (split.train, split.validation, split.test)
    labels = [np.array([s.label for s in part]) for part in parts]
    tokens = [[segmenter.tokenize(s.text) for s in part] for part in parts]
    texts = [[normalize(s.text) for s in part] for part in parts]

    def run(vectorizer: Any, inputs: list[list[Any]]) -> dict[str, Any]:
        train, validation, test = (tuple(pair) for pair in zip(inputs, labels))
        return _fit_score(vectorizer, train, validation, test, thresholds)  # type: ignore[arg-type]

    return {
        "tfidf_lr_jieba_tokens": run(TfidfVectorizer(analyzer=_identity), tokens),
        "tfidf_lr_first_20_tokens": run(TfidfVectorizer(analyzer=_identity),
                                        [[t[:MAX_LEN] for t in part] for part in tokens]),
        "tfidf_lr_char_1_3_grams": run(TfidfVectorizer(analyzer="char", ngram_range=(1, 3)), texts),
    }
