"""TF Serving warmup records (``assets.extra/tf_serving_warmup_requests``) from real texts.

TF Serving replays these ``PredictionLog`` records when it loads a version, before the version
takes traffic, so the first real request does not pay for graph initialization. The records are
built with tensorflow-serving-api's own protos, from real messages run through the same pipeline
and this version's own vectors, so they exercise exactly what production requests will.

The first records carry one message each (the service's single-message path); the last one
carries up to ``batch`` messages at once (its micro-batch path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from antispam import versions
from antispam.features import Featurizer
from antispam.labels import PASS, SPAM
from antispam.text import Segmenter, default_segmenter

MAX_RECORDS = 1000  # TF Serving reads at most this many warmup records


def warmup_texts(samples: list[Any], count: int, seed: int) -> list[str]:
    """A fixed, label-balanced pick of training messages (real texts, never test ones)."""
    rng = np.random.default_rng(seed)
    by_label = {label: [s.text for s in samples if s.label == label] for label in (SPAM, PASS)}
    picked = {label: [texts[i] for i in rng.permutation(len(texts))[: -(-count // 2)]]
              for label, texts in by_label.items()}
    mixed = [text for pair in zip(picked[SPAM], picked[PASS]) for text in pair]
    return mixed[:count] or [s.text for s in samples[:count]]


def warmup_batches(texts: Sequence[str], singles: int = 32, batch: int = 64) -> list[list[str]]:
    """Group texts into records: up to ``singles`` one-message records, then one batch."""
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("warmup needs at least one non-empty text")
    singles = min(singles, MAX_RECORDS - 1)
    records = [[text] for text in texts[:singles]]
    if len(texts) > 1:
        records.append(list(texts[:batch]))
    return records


def write_warmup(path: str | Path, model_name: str, featurizer: Featurizer, texts: Sequence[str],
                 segmenter: Segmenter | None = None, singles: int = 32, batch: int = 64) -> int:
    """Write the records for ``texts`` to ``path``; return how many were written.

    Each record holds the rows the service would send for its texts (all their windows).
    """
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    segmenter = segmenter or default_segmenter()
    records = warmup_batches(texts, singles, batch)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for group in records:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=versions.SIGNATURE))
            tensor, _plan = featurizer.featurize([segmenter.tokenize(text) for text in group])
            request.inputs[versions.INPUT_KEY].CopyFrom(tf.make_tensor_proto(tensor))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(records)


def read_warmup(path: str | Path) -> list[object]:
    """Parse every record back into a ``PredictionLog`` (for checks and tests)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for raw in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(raw.numpy())
        logs.append(log)
    return logs
