"""Train a classifier with given settings and print the figures it is selected on — validation only.

    python scripts/sweep.py --kind cnn [--word2vec DIR] [--out sweep.jsonl] CONFIG [CONFIG ...]

A CONFIG is ``label`` or ``label:key=value,key=value`` where a key is a field of
:class:`antispam.network.train.ClassifierSettings` (``augment=1.0``, ``temperature=3``,
``stride=5``, ``patience=5``, ``dropout=0.3``, ``everyday_weight=8``, ``seed=1``, …; unset ones
take the network's defaults, ``ClassifierSettings.for_kind``) or one of the sweep's own:

* ``rnn_units`` / ``cnn_filters``: width of the network (rnn / cnn only).

Each config trains once (nothing exported; the model lives in this process only) on the training
split plus the everyday training part, through the project's one text pipeline
(:class:`antispam.text.Segmenter`) and featurizer (``TrainedClassifier.predict_messages``: the
version's vectors, windows and fold, as the service computes them). The test split is removed
before training (``train_classifier`` then skips its one look at it), so nothing here can select
on test. Printed, one JSON line per config (and appended to ``--out``):

* ``val_f1`` (spam F1 at p >= 0.5), precision, recall, ROC-AUC on the validation split;
* the robustness figures of :func:`antispam.network.robustness.robustness_report` built from the
  validation split: ``prepended_ratio`` / ``surrounded_ratio`` (recall on spam with ordinary
  validation sentences around it / plain recall), ``plain_fpr`` and ``joined_fpr`` (pass
  messages and pass messages joined) and their difference;
* ``everyday_fpr``: false-positive rate at p >= 0.5 on the *selection half* of the held-out
  everyday messages (a stable hash picks it, see :func:`everyday_selection_half`). The other half
  is never looked at while sweeping, so the final everyday figure is not one that was tuned on.
* ``best_threshold``: the validation threshold with the best F1, for information (the acceptance
  F1 is at 0.5).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
import time
from typing import Any

SWEEP_KEYS = ("rnn_units", "cnn_filters")
_SALT = "antispam-everyday-sweep-v1"


def everyday_selection_half(texts: list[str]) -> tuple[list[str], list[str]]:
    """Held-out everyday texts cut in two by a stable hash: (selection half, untouched half)."""
    from antispam.text import normalize

    chosen: list[str] = []
    rest: list[str] = []
    for text in texts:
        digest = hashlib.sha256(f"{_SALT}\x00{normalize(text)}".encode("utf-8")).digest()
        (chosen if int.from_bytes(digest[:8], "big") / 2**64 < 0.5 else rest).append(text)
    return chosen, rest


def parse_config(spec: str) -> tuple[str, dict[str, str]]:
    label, _, rest = spec.partition(":")
    pairs: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"bad config item {item!r} in {spec!r}: expected key=value")
        pairs[key.strip().replace("-", "_")] = value.strip()
    return label or "default", pairs


def settings_for(pairs: dict[str, str]) -> Any:
    from antispam.network.train import ClassifierSettings

    fields = {f.name: f for f in dataclasses.fields(ClassifierSettings)}
    values: dict[str, Any] = {}
    for key, raw in pairs.items():
        if key in SWEEP_KEYS:
            continue
        if key not in fields:
            raise SystemExit(f"unknown setting {key!r}; settings: {', '.join(fields)}, {', '.join(SWEEP_KEYS)}")
        default = fields[key].default
        if key == "everyday_weight":
            values[key] = int(raw)
        elif isinstance(default, bool):
            values[key] = raw.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, int):
            values[key] = int(raw)
        elif isinstance(default, float) or default is None:
            values[key] = float(raw)
        else:
            values[key] = raw
    return ClassifierSettings(**values)


def run_one(kind: str, label: str, pairs: dict[str, str], corpus_split: Any, vectors: Any,
            segmenter: Any, everyday_texts: list[str]) -> dict[str, Any]:
    import numpy as np

    from antispam import everyday
    from antispam.network import cnn, rnn
    from antispam.network.metrics import binary_scores, scores_at
    from antispam.network.robustness import robustness_report
    from antispam.network.train import train_classifier

    settings = settings_for(pairs).for_kind(kind)
    split = everyday.with_everyday(corpus_split, settings.everyday_weight)
    split = dataclasses.replace(split, test=[])  # never trained, selected or scored here
    patched: list[tuple[Any, Any]] = []
    if "rnn_units" in pairs:
        patched.append((rnn, rnn.build_model))
        rnn.build_model = functools.partial(rnn.build_model, units=int(pairs["rnn_units"]))
    if "cnn_filters" in pairs:
        patched.append((cnn, cnn.build_model))
        cnn.build_model = functools.partial(cnn.build_model, filters=int(pairs["cnn_filters"]))
    started = time.perf_counter()
    try:
        trained = train_classifier(kind, split, vectors, settings, progress=False, segmenter=segmenter)
    finally:
        for module, original in patched:
            module.build_model = original
    train_seconds = time.perf_counter() - started

    def score(texts: list[str]) -> np.ndarray:
        return trained.predict_messages(segmenter.tokenize_many(texts))

    report = robustness_report(score, split.validation, threshold=0.5, everyday=everyday_texts)
    rows = report["variants"]
    labels = np.array([s.label for s in split.validation])
    probs = score([s.text for s in split.validation])
    plain = binary_scores(labels, probs)
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    f1s = [scores_at(labels, probs, float(t))["f1"] for t in grid]
    best = int(np.argmax(f1s))

    def r(x: Any) -> Any:
        return None if x is None else round(float(x), 4)

    return {
        "kind": kind, "label": label, "config": pairs,
        "val_f1": r(plain["f1"]), "val_precision": r(plain["precision"]), "val_recall": r(plain["recall"]),
        "val_roc_auc": r(plain["roc_auc"]),
        "plain_recall": r(rows["plain_spam"]["recall"]),
        "prepended_ratio": r(rows["prepended"]["recall_ratio"]),
        "surrounded_ratio": r(rows["surrounded"]["recall_ratio"]),
        "spaced_ratio": r(rows["spaced"]["recall_ratio"]),
        "emoji_ratio": r(rows["emoji"]["recall_ratio"]),
        "plain_fpr": r(rows["plain_pass"]["false_positive_rate"]),
        "joined_fpr": r(rows["joined_pass"]["false_positive_rate"]),
        "joined_minus_plain": r(report["fpr_increase"]),
        "everyday_fpr": r(rows["everyday"]["false_positive_rate"]),
        "everyday_count": rows["everyday"]["count"],
        "best_threshold": float(grid[best]), "best_threshold_f1": r(f1s[best]),
        "best_epoch": trained.best_epoch, "epochs_run": len(trained.history),
        "train_seconds": round(train_seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", metavar="CONFIG", help="label[:key=value,...]")
    parser.add_argument("--kind", choices=("cnn", "rnn", "mlp"), required=True)
    parser.add_argument("--data", default=os.environ.get("ANTISPAM_DATA"))
    parser.add_argument("--word2vec", default="data/word2vec", help="word vectors folder")
    parser.add_argument("--out", help="append each result as a JSON line to this file")
    args = parser.parse_args(argv)
    for spec in args.configs:  # fail on a typo before anything heavy loads
        settings_for(parse_config(spec)[1])

    from antispam.network import quiet_libraries

    quiet_libraries(False)
    logging.basicConfig(level=logging.WARNING)
    from antispam import data, everyday
    from antispam.features import WordVectors
    from antispam.text import Segmenter

    corpus_split = data.load_split(args.data, progress=False)
    vectors = WordVectors.load(args.word2vec)
    segmenter = Segmenter()
    selection, _untouched = everyday_selection_half([row.text for row in everyday.held_out_part()])
    for spec in args.configs:
        label, pairs = parse_config(spec)
        result = run_one(args.kind, label, pairs, corpus_split, vectors, segmenter, selection)
        line = json.dumps(result, ensure_ascii=False)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
