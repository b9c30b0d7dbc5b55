"""Tiny, hand-built model versions in the real layout, for tests of serving paths.

A version scores texts by whether their words point along +e0 (spam) or -e0 (pass) in its own
vector space. ``flip=True`` builds a version whose vectors AND weights are both negated: paired
correctly it gives the same verdicts, paired with another version's vectors it gives the opposite
ones — so a test can prove the service never mixes vectors of one version with weights of another.

It uses plain TensorFlow (no TensorLayer) so it builds in well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from antispam import versions
from antispam.features import DIM, FIRST_WINDOW, MAX_LEN, UNK, Featurizer, Windowing, WordVectors

SPAM_WORDS = ["发票", "代开", "贷款", "优惠", "微信", "加", "xxxxxxxxxxx"]
PASS_WORDS = ["今天", "开会", "妈妈", "晚饭", "回家", "我们", "明天"]
SPAM_TEXT = "代开发票，优惠贷款，加微信13800138000"
PASS_TEXT = "妈妈，我们明天回家吃晚饭"


def tiny_vectors(flip: bool = False, seed: int = 0) -> WordVectors:
    rng = np.random.default_rng(seed)
    vocab = [UNK, *SPAM_WORDS, *PASS_WORDS]
    matrix = rng.normal(0, 0.01, (len(vocab), DIM)).astype(np.float32)
    matrix[0, :] = 0.01
    sign = -1.0 if flip else 1.0
    for i, word in enumerate(vocab):
        if word in SPAM_WORDS:
            matrix[i, 0] = 1.0 * sign
        elif word in PASS_WORDS:
            matrix[i, 0] = -1.0 * sign
    return WordVectors(vocab, matrix)


def build_version(model_dir: str | Path, *, flip: bool = False, name: str | None = None,
                  warmup_texts: list[str] | None = None, sleep_ms: float = 0.0,
                  windowing: Windowing | None = None,
                  preprocessing: dict[str, object] | None = None) -> int:
    """Export one tiny version into ``model_dir`` (atomically) and return its number.

    Without ``windowing`` the version records no window settings (read as the first 20 tokens,
    like versions made before full-text scoring). ``preprocessing`` overrides what
    ``preprocessing.json`` records (for versions with broken settings).
    """
    import tensorflow as tf

    model_dir = Path(model_dir)
    sign = -1.0 if flip else 1.0
    vectors = tiny_vectors(flip)

    class Tiny(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = tf.Variable(4.0 * sign)

        @tf.function(input_signature=[tf.TensorSpec([None, MAX_LEN, DIM], tf.float32, name="inputs")])
        def serve(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
            if sleep_ms:
                # tf.data's test-only sleep stage: unlike a py_function it survives export, so a
                # served version stalls in another process too (the serve subprocess, the stand-in),
                # and it sleeps without burning CPU. take(1) stops before a second sleep.
                from tensorflow.python.data.experimental.ops import testing

                slept = tf.data.Dataset.range(1).apply(testing.sleep(int(sleep_ms * 1000))).take(1) \
                    .reduce(tf.constant(0, tf.int64), lambda total, x: total + x)
                inputs = inputs + tf.cast(slept, tf.float32) * 0.0
            mask = tf.cast(tf.reduce_any(inputs != 0, axis=-1), tf.float32)
            total = tf.reduce_sum(inputs[:, :, 0] * mask, axis=1)
            mean = total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
            spam_logit = mean * self.scale
            probs = tf.stack([tf.sigmoid(spam_logit), 1.0 - tf.sigmoid(spam_logit)], axis=1)
            return {"probabilities": probs, "classes": tf.argmax(probs, axis=1)}

    module = Tiny()
    staged = versions.staging_dir(model_dir)
    tf.saved_model.save(module, str(staged), signatures={versions.SIGNATURE: module.serve})
    assets = staged / versions.ASSETS_DIR
    vectors.save(assets)
    settings = {**versions.preprocessing_settings(windowing), **(preprocessing or {})}
    (assets / versions.PREPROCESSING_FILE).write_text(json.dumps(settings))
    (assets / versions.METRICS_FILE).write_text(json.dumps({"tiny": True, "flip": flip}))
    write_warmup(assets / versions.WARMUP_FILE, name or model_dir.name,
                 Featurizer(vectors, windowing or FIRST_WINDOW), warmup_texts or [SPAM_TEXT, PASS_TEXT])
    return versions.publish(staged, model_dir)


def write_warmup(path: Path, model_name: str, featurizer: Featurizer, texts: list[str]) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    from antispam.text import tokenize

    with tf.io.TFRecordWriter(str(path)) as writer:
        for text in texts:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=versions.SIGNATURE))
            batch, _plan = featurizer.featurize([tokenize(text)])
            request.inputs[versions.INPUT_KEY].CopyFrom(tf.make_tensor_proto(batch))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
