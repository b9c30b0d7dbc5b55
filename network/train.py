"""Train one classifier on the training split, select it on validation, score it once on test.

What keeps the figures honest:

* Every text goes through :func:`antispam.text.Segmenter.tokenize` and the version's own word
  vectors, exactly as the service will process it (DESIGN.md §3).
* Early stopping and the choice of epoch look only at the validation split; the test split is
  featurized and scored once, after the best weights are restored.
* One compiled train step (``tf.function`` with a fixed input signature, so it traces once) and
  seeded initialization, shuffling and dropout.

Unknown words: at serve time about a sixth of the tokens a network sees are outside the
vocabulary and arrive as the ``UNK`` vector. Training replaces a share of the tokens by ``UNK``
at each step (``unknown_rate``), so the network learns to read messages with holes in them and
the ``UNK`` row learns what an unknown word suggests.

Batches are fed as token-id matrices and looked up inside the compiled step from the same rows
:meth:`WordVectors.featurize_batch` uses (padding → an all-zero row), so the network sees exactly
the featurizer's ``[n, 20, 200]`` output without holding the whole corpus as floats in memory.

Word vectors are fine-tuned by default ("non-static" in Kim, 2014), and training-split words that
word2vec dropped as rare get rows of their own (starting from the ``UNK`` vector). The version
then ships these tuned vectors as its own (DESIGN.md §4: a version carries the vectors it was
trained with), so serving stays exactly the trainer's input; the serving signature is unchanged.
Only training-split text shapes them, so the test figures stay honest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from antispam.data import Sample, Split
from antispam.features import DIM, MAX_LEN, WordVectors
from antispam.network.metrics import binary_scores
from antispam.network.models import KINDS, build_model
from antispam.text import Segmenter, default_segmenter

log = logging.getLogger(__name__)


@dataclass
class ClassifierSettings:
    """Training settings; recorded in every version's ``metrics.json``.

    The defaults are the ones the acceptance figures were measured with; ``epochs`` is a
    ceiling, early stopping usually ends sooner.
    """

    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 3  # epochs without a better validation F1 before stopping
    plateau_factor: float = 1.0  # learning rate multiplier after an epoch without improvement (1: off)
    seed: int = 20171128
    dropout: float = 0.5
    rnn_cell: str = "lstm"  # "lstm" or "gru", for kind "rnn" only
    max_seconds: float | None = None  # stop after the epoch that crosses this wall time
    unknown_rate: float = 0.1  # share of training tokens replaced by UNK at each step
    fine_tune_vectors: bool = True  # train the word vectors with the network (shipped with it)
    extend_min_count: int = 2  # add training words seen this often that word2vec lacks (0: off)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be at least 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be positive")
        if self.patience < 1:
            raise ValueError("patience must be at least 1")
        if not 0.0 < self.plateau_factor <= 1.0:
            raise ValueError("plateau_factor must be in (0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if not 0.0 <= self.unknown_rate < 1.0:
            raise ValueError("unknown_rate must be in [0, 1)")
        if self.rnn_cell not in ("lstm", "gru"):
            raise ValueError("rnn_cell must be 'lstm' or 'gru'")
        if self.extend_min_count < 0:
            raise ValueError("extend_min_count must be 0 (off) or positive")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError("max_seconds must be positive")

    def model_options(self, kind: str) -> dict[str, Any]:
        return {"cell": self.rnn_cell} if kind == "rnn" else {}


@dataclass
class TrainedClassifier:
    """A trained network (best validation epoch restored, in eval mode) and how it got there."""

    kind: str
    model: Any  # tl.models.Model
    vectors: WordVectors  # the vectors to serve it with (tuned/extended; what a version ships)
    source_fingerprint: str  # vectors_fingerprint() of the word vectors it started from
    settings: ClassifierSettings
    history: list[dict[str, Any]]
    best_epoch: int
    validation: dict[str, Any]
    test: dict[str, Any]
    split_manifest: dict[str, Any]
    wall_seconds: float
    stopped_because: str
    _predict: Any = field(default=None, repr=False)

    def predict_proba(self, inputs: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """float32 ``[n, 2]`` softmax of the network on featurizer output ``[n, 20, 200]``."""
        import tensorflow as tf

        if self._predict is None:
            model = self.model

            @tf.function(input_signature=[tf.TensorSpec([None, MAX_LEN, DIM], tf.float32)],
                         autograph=False)
            def predict(x: tf.Tensor) -> tf.Tensor:
                return tf.nn.softmax(model(x), axis=-1)

            self._predict = predict
        self.model.eval()
        inputs = np.asarray(inputs, dtype=np.float32)
        if inputs.ndim != 3 or inputs.shape[1:] != (MAX_LEN, DIM):
            raise ValueError(f"expected inputs of shape [n, {MAX_LEN}, {DIM}], got {inputs.shape}")
        parts = [self._predict(inputs[i:i + batch_size]).numpy()
                 for i in range(0, len(inputs), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 2), np.float32)

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` and the training report record about this run."""
        return {
            "model": self.kind,
            "test": self.test,
            "validation": self.validation,
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.history),
            "stopped_because": self.stopped_because,
            "history": self.history,
            "settings": dataclasses.asdict(self.settings),
            "split": self.split_manifest,
            "wall_seconds": round(self.wall_seconds, 1),
            "vocabulary_size": len(self.vectors),
            "source_vectors": self.source_fingerprint,
            "parameters": int(sum(int(np.prod(w.shape)) for w in self.model.all_weights)),
        }


def prepare_vectors(vectors: WordVectors) -> WordVectors:
    """The vectors a model is trained and served with: every vocabulary row non-zero.

    The network tells padding from words by ``any(vector != 0)`` (see
    :mod:`antispam.network.layers`). A word whose row is all zeros — typically ``UNK`` if the
    word2vec run never trained it — would be read as padding. Such rows get a fixed
    pseudo-random vector (seeded by the row number) with the typical length of the other rows,
    so the result is deterministic and the exported vectors are exactly the trained ones.
    Non-finite values cannot be repaired and raise ValueError.
    """
    matrix = np.array(vectors.matrix, dtype=np.float32, copy=True)
    if matrix.shape[1] != DIM:
        raise ValueError(f"word vectors are {matrix.shape[1]}-d, the classifiers need {DIM}-d")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("word vectors contain NaN or infinite values")
    zero_rows = np.flatnonzero(~np.any(matrix != 0, axis=1))
    if zero_rows.size == 0:
        return vectors
    norms = np.linalg.norm(matrix, axis=1)
    scale = float(np.median(norms[norms > 0])) if np.any(norms > 0) else 1.0
    for row in zero_rows:
        filler = np.random.default_rng(int(row)).normal(size=DIM)
        matrix[row] = (filler / np.linalg.norm(filler) * scale).astype(np.float32)
    log.info("gave %d all-zero vocabulary rows (UNK: %s) a fixed non-zero vector",
             zero_rows.size, bool(0 in zero_rows))
    return WordVectors(list(vectors.vocab), matrix)


def vectors_fingerprint(vectors: WordVectors) -> str:
    """Digest of a vocabulary and its matrix: ties a trained model to the vectors it came from."""
    digest = hashlib.sha256("\n".join(vectors.vocab).encode("utf-8"))
    digest.update(np.ascontiguousarray(vectors.matrix, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def extend_vocabulary(vectors: WordVectors, token_lists: Sequence[Sequence[str]], min_count: int,
                      seed: int) -> WordVectors:
    """Append words seen ``min_count``+ times in ``token_lists`` that ``vectors`` lacks.

    New rows start at the ``UNK`` vector plus a little seeded noise: to the network they are
    unknown words at first, and fine-tuning moves each towards what it signals. Words are
    ordered by descending count, then alphabetically, so the result is reproducible.
    """
    counts: dict[str, int] = {}
    for tokens in token_lists:
        for token in tokens[:MAX_LEN]:  # only what the network sees can be learned
            if token not in vectors:
                counts[token] = counts.get(token, 0) + 1
    new = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    if not new:
        return vectors
    rng = np.random.default_rng(seed)
    unk = vectors.matrix[0]
    noise = rng.normal(0.0, 0.1 * float(np.std(vectors.matrix)) + 1e-6, (len(new), vectors.dim))
    rows = (unk[None, :] + noise).astype(np.float32)
    return WordVectors([*vectors.vocab, *new], np.vstack([vectors.matrix, rows]))


def token_ids(token_lists: Sequence[Sequence[str]], vectors: WordVectors) -> np.ndarray:
    """int32 ``[n, 20]`` row ids (unknown → 0, padding → ``vectors.pad_id``)."""
    ids = np.full((len(token_lists), MAX_LEN), vectors.pad_id, dtype=np.int32)
    for row, tokens in enumerate(token_lists):
        ids[row] = vectors.ids(tokens)
    return ids


def tokenize_all(samples: Sequence[Sample], segmenter: Segmenter) -> list[list[str]]:
    return [segmenter.tokenize(sample.text) for sample in samples]


def train_classifier(kind: str, split: Split, vectors: WordVectors,
                     settings: ClassifierSettings | None = None, progress: bool = True,
                     segmenter: Segmenter | None = None) -> TrainedClassifier:
    """Train ``kind`` ("cnn", "rnn" or "mlp") on ``split.train``; see the module docstring."""
    import tensorflow as tf
    import tf_keras
    from tqdm.auto import tqdm

    if kind not in KINDS:
        raise ValueError(f"unknown classifier {kind!r}; choose one of {', '.join(KINDS)}")
    settings = settings or ClassifierSettings()
    for name, part in (("train", split.train), ("validation", split.validation), ("test", split.test)):
        labels = {s.label for s in part}
        if name != "test" and len(labels) < 2:
            raise ValueError(f"the {name} split needs both spam and pass messages, has {len(part)} "
                             f"message(s) with labels {sorted(labels)}")
    started = time.perf_counter()
    source = prepare_vectors(vectors)
    segmenter = segmenter or default_segmenter()
    train_tokens = tokenize_all(split.train, segmenter)
    vectors = source
    if settings.fine_tune_vectors and settings.extend_min_count:
        vectors = extend_vocabulary(source, train_tokens, settings.extend_min_count, settings.seed)
    train_ids = token_ids(train_tokens, vectors)
    validation_ids = token_ids(tokenize_all(split.validation, segmenter), vectors)
    train_y = np.array([s.label for s in split.train], dtype=np.int32)
    validation_y = np.array([s.label for s in split.validation], dtype=np.int32)

    tf.random.set_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = build_model(kind, settings.dropout, **settings.model_options(kind))
    table = tf.Variable(vectors.matrix, trainable=settings.fine_tune_vectors, name="word_vectors")
    weights = model.trainable_weights + ([table] if settings.fine_tune_vectors else [])
    optimizer = tf_keras.optimizers.Adam(learning_rate=settings.learning_rate)
    rows = len(vectors)

    def lookup(ids: tf.Tensor) -> tf.Tensor:
        # Padding ids (== rows) read row rows-1 and are zeroed: no gradient reaches any row from
        # padding, and the input is exactly the featurizer's (padding = zero vectors).
        real = tf.cast(ids < rows, tf.float32)[:, :, None]
        return tf.gather(table, tf.minimum(ids, rows - 1)) * real

    ids_spec = tf.TensorSpec([None, MAX_LEN], tf.int32)

    @tf.function(input_signature=[ids_spec, tf.TensorSpec([None], tf.int32)], autograph=False)
    def train_step(ids: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        if settings.unknown_rate > 0:
            # Word dropout to UNK: at test time a sixth or so of the tokens are unknown words,
            # so training shows the network unknown words in context, and trains the UNK row.
            hit = tf.random.uniform(tf.shape(ids)) < settings.unknown_rate
            ids = tf.where(hit & (ids < rows), tf.zeros_like(ids), ids)
        with tf.GradientTape() as tape:
            logits = model(lookup(ids))
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    @tf.function(input_signature=[ids_spec], autograph=False)
    def predict_ids(ids: tf.Tensor) -> tf.Tensor:
        return tf.nn.softmax(model(lookup(ids)), axis=-1)

    def probabilities(ids: np.ndarray) -> np.ndarray:
        model.eval()
        return np.concatenate([predict_ids(ids[i:i + 1024]).numpy() for i in range(0, len(ids), 1024)])

    def scores(ids: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        probs = probabilities(ids)
        picked = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
        return binary_scores(labels, probs[:, 0], loss=float(-np.mean(np.log(picked))))

    history: list[dict[str, Any]] = []
    best: tuple[float, float] | None = None  # (validation F1, -validation loss)
    best_weights: list[np.ndarray] = []
    best_epoch, stale, stopped_because = 0, 0, "epochs"
    steps = -(-len(train_ids) // settings.batch_size)
    for epoch in range(1, settings.epochs + 1):
        epoch_started = time.perf_counter()
        order = rng.permutation(len(train_ids))
        model.train()
        bar = tqdm(total=steps, desc=f"{kind} epoch {epoch}/{settings.epochs}", unit="batch",
                   disable=not progress, leave=True, dynamic_ncols=True)
        total_loss = 0.0
        for step in range(steps):
            batch = order[step * settings.batch_size:(step + 1) * settings.batch_size]
            loss = float(train_step(train_ids[batch], train_y[batch]))
            total_loss += loss * len(batch)
            bar.update(1)
            if step % 20 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{total_loss / min(len(order), (step + 1) * settings.batch_size):.4f}")
        train_loss = total_loss / len(train_ids)
        validation = scores(validation_ids, validation_y)
        record = {
            "epoch": epoch,
            "loss": train_loss,
            "validation_loss": validation["loss"],
            "validation_accuracy": validation["accuracy"],
            "validation_f1": validation["f1"],
            "validation_roc_auc": validation["roc_auc"],
            "learning_rate": float(optimizer.learning_rate),
            "seconds": round(time.perf_counter() - epoch_started, 2),
        }
        history.append(record)
        bar.set_postfix(loss=f"{train_loss:.4f}", val_loss=f"{validation['loss']:.4f}",
                        val_acc=f"{validation['accuracy']:.4f}", val_f1=f"{validation['f1']:.4f}")
        bar.close()
        key = (validation["f1"], -validation["loss"])
        if best is None or key > best:
            best, best_epoch, stale = key, epoch, 0
            best_weights = [w.numpy() for w in [*model.all_weights, table]]
        else:
            stale += 1
            if settings.plateau_factor < 1.0:
                # Smaller steps once validation stops improving: the next epochs refine rather
                # than overshoot.
                optimizer.learning_rate.assign(optimizer.learning_rate * settings.plateau_factor)
        if stale >= settings.patience:
            stopped_because = f"no better validation F1 for {settings.patience} epochs"
            break
        if settings.max_seconds is not None and time.perf_counter() - started > settings.max_seconds:
            stopped_because = f"time budget of {settings.max_seconds:g} s reached"
            break

    for variable, value in zip([*model.all_weights, table], best_weights):
        variable.assign(value)
    model.eval()
    final_vectors = WordVectors(list(vectors.vocab), table.numpy())
    if prepare_vectors(final_vectors) is not final_vectors:
        raise RuntimeError("fine-tuning drove a word vector to exactly zero; retrain with another seed")
    validation_scores = scores(validation_ids, validation_y)
    # The one and only look at the test split.
    test_ids = token_ids(tokenize_all(split.test, segmenter), vectors)
    test_y = np.array([s.label for s in split.test], dtype=np.int32)
    test_scores = scores(test_ids, test_y) if len(test_y) else {}
    trained = TrainedClassifier(
        kind=kind, model=model, vectors=final_vectors, source_fingerprint=vectors_fingerprint(source),
        settings=settings, history=history,
        best_epoch=best_epoch, validation=validation_scores, test=test_scores,
        split_manifest=split.manifest(), wall_seconds=time.perf_counter() - started,
        stopped_because=stopped_because,
    )
    log.info("%s: best epoch %d of %d (%s); test accuracy %.4f, F1 %.4f, %.0f s", kind, best_epoch,
             len(history), stopped_because, test_scores.get("accuracy", float("nan")),
             test_scores.get("f1", float("nan")), trained.wall_seconds)
    return trained
