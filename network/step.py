"""One classifier's training state: the network, its trainable word-vector table and the two
compiled functions that use them (a train step on a batch, the softmax of plan rows).

Kept apart from the epoch loop (:func:`antispam.network.train.train_classifier`) so the loop
reads as "shuffle, step, score, decide" and the TensorFlow details live in one place. Each
``tf.function`` has a fixed input signature, so it traces once per run.

Batches arrive as the featurizer's :class:`~antispam.features.Plan` (row ids, back-off
character ids) and are looked up inside the compiled functions from the trainable table, with
the same means the service computes in numpy (:meth:`antispam.features.Featurizer.rows`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from antispam.features import DIM, MAX_LEN, Featurizer, Plan, WordVectors
from antispam.labels import SPAM
from antispam.network.metrics import binary_scores
from antispam.network.models import build_model

PREDICT_CHUNK = 512  # messages per plan when scoring a whole split


def message_log_probabilities(logits: Any, owner: Any, messages: Any, aggregation: str,
                              temperature: float = 1.0) -> tuple[Any, Any]:
    """log P(spam), log P(pass) of each message from its windows' logits, as :meth:`Plan.fold`.

    In log space so the loss stays finite when a window is certain. ``max``: the most spam-like
    window is also the least pass-like one, so both come from the same window. ``noisy_or``:
    P(pass) is the product of the windows' P(pass). ``mean_odds``: the mean of the windows' odds.
    """
    import tensorflow as tf

    log_p = tf.nn.log_softmax(logits, axis=-1)
    if aggregation == "max":
        return (tf.math.unsorted_segment_max(log_p[:, 0], owner, messages),
                tf.math.unsorted_segment_min(log_p[:, 1], owner, messages))
    if aggregation == "noisy_or":
        log_pass = tf.minimum(tf.math.unsorted_segment_sum(log_p[:, 1], owner, messages), -1e-7)
        return tf.math.log(-tf.math.expm1(log_pass)), log_pass
    # mean_odds: log of the mean of exp(log-odds) over a message's windows.
    log_odds = (logits[:, 0] - logits[:, 1]) / temperature
    top = tf.math.unsorted_segment_max(log_odds, owner, messages)
    total = tf.math.unsorted_segment_sum(tf.exp(log_odds - tf.gather(top, owner)), owner, messages)
    count = tf.math.unsorted_segment_sum(tf.ones_like(log_odds), owner, messages)
    mean_log_odds = temperature * (top + tf.math.log(total) - tf.math.log(count))
    return tf.math.log_sigmoid(mean_log_odds), tf.math.log_sigmoid(-mean_log_odds)


def plan_tensors(plan: Plan) -> dict[str, np.ndarray]:
    """A plan as the compiled step's inputs: row ids, back-off characters, row → message."""
    counts = np.diff(np.append(plan.starts, len(plan.ids)))
    chars = plan.extra_chars
    return {
        "ids": plan.ids,
        "chars": np.concatenate(chars).astype(np.int32) if chars else np.zeros(0, np.int32),
        "char_rows": (np.repeat(np.arange(len(chars), dtype=np.int32), [len(c) for c in chars])
                      if chars else np.zeros(0, np.int32)),
        "extra_rows": np.int32(len(chars)),
        "owner": np.repeat(np.arange(plan.messages, dtype=np.int32), counts),
        "messages": np.int32(plan.messages),
    }


class ClassifierStep:
    """The network, the vector table, the optimizer and the compiled train/predict functions.

    Built in a fixed order after seeding TensorFlow (network, table, optimizer), so a seed gives
    the same initial weights every run. ``featurizer`` turns token lists into plans over the
    table's rows (its vocabulary is the table's).
    """

    def __init__(self, kind: str, vectors: WordVectors, featurizer: Featurizer, *, seed: int,
                 dropout: float, model_options: dict[str, Any], fine_tune_vectors: bool,
                 learning_rate: float, aggregation: str, temperature: float, pass_weight: float) -> None:
        import tensorflow as tf
        import tf_keras

        tf.random.set_seed(seed)
        self.featurizer = featurizer
        self.model = build_model(kind, dropout, **model_options)
        self.table = tf.Variable(vectors.matrix, trainable=fine_tune_vectors, name="word_vectors")
        self._weights = self.model.trainable_weights + ([self.table] if fine_tune_vectors else [])
        self.optimizer = tf_keras.optimizers.Adam(learning_rate=learning_rate)
        self._rows = len(vectors)
        self._aggregation = aggregation
        self._temperature = temperature
        self._pass_weight = pass_weight
        plan_spec = [tf.TensorSpec([None, MAX_LEN], tf.int32), tf.TensorSpec([None], tf.int32),
                     tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32),
                     tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32)]
        self._train_step = tf.function(self._train_graph, autograph=False,
                                        input_signature=[*plan_spec, tf.TensorSpec([None], tf.int32)])
        self._predict_rows = tf.function(self._predict_graph, autograph=False, input_signature=plan_spec[:4])

    # -- compiled parts ----------------------------------------------------------------------

    def _lookup(self, ids: Any, chars: Any, char_rows: Any, extra_rows: Any) -> Any:
        # The featurizer's rows from the trainable table: vocabulary ids read their row, padding
        # (== rows) reads zeros, back-off ids (> rows) read the mean of their characters' rows,
        # as Featurizer.rows does in numpy. Gradients reach every row that was read.
        import tensorflow as tf

        table, rows = self.table, self._rows
        extras = tf.math.unsorted_segment_mean(tf.gather(table, chars), char_rows, extra_rows)
        extras = tf.concat([extras, tf.zeros([1, DIM], table.dtype)], axis=0)
        vocab_part = tf.gather(table, tf.minimum(ids, rows - 1))
        extra_part = tf.gather(extras, tf.clip_by_value(ids - rows - 1, 0, extra_rows))
        is_vocab = tf.cast(ids < rows, table.dtype)[:, :, None]
        is_extra = tf.cast(ids > rows, table.dtype)[:, :, None]
        return vocab_part * is_vocab + extra_part * is_extra

    def _train_graph(self, ids: Any, chars: Any, char_rows: Any, extra_rows: Any, owner: Any,
                     messages: Any, labels: Any) -> Any:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            logits = self.model(self._lookup(ids, chars, char_rows, extra_rows))
            log_spam, log_pass = message_log_probabilities(logits, owner, messages, self._aggregation,
                                                           self._temperature)
            picked = tf.where(tf.equal(labels, SPAM), log_spam, log_pass)
            if self._pass_weight == 1.0:
                loss = -tf.reduce_mean(picked)
            else:  # a weighted mean, so the step size stays comparable
                weight = tf.where(tf.equal(labels, SPAM), 1.0, self._pass_weight)
                loss = -tf.reduce_sum(weight * picked) / tf.reduce_sum(weight)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self._weights), self._weights))
        return loss

    def _predict_graph(self, ids: Any, chars: Any, char_rows: Any, extra_rows: Any) -> Any:
        import tensorflow as tf

        return tf.nn.softmax(self.model(self._lookup(ids, chars, char_rows, extra_rows)), axis=-1)

    # -- the loop's interface ----------------------------------------------------------------

    def train_on(self, plan: Plan, labels: np.ndarray) -> float:
        """One optimizer step on a batch's plan; the batch's mean loss."""
        t = plan_tensors(plan)
        return float(self._train_step(t["ids"], t["chars"], t["char_rows"], t["extra_rows"], t["owner"],
                                      t["messages"], labels))

    def message_probabilities(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """P(spam) of whole messages (eval mode), folded from their windows as the service folds."""
        self.model.eval()
        parts = []
        for i in range(0, len(token_lists), PREDICT_CHUNK):
            plan = self.featurizer.plan(token_lists[i:i + PREDICT_CHUNK])
            t = plan_tensors(plan)
            parts.append(plan.fold(self._predict_rows(t["ids"], t["chars"], t["char_rows"],
                                                      t["extra_rows"]).numpy()))
        return np.concatenate(parts) if parts else np.zeros(0)

    def scores(self, token_lists: Sequence[Sequence[str]], labels: np.ndarray) -> dict[str, Any]:
        """:func:`binary_scores` of whole messages plus their mean log loss."""
        spam = self.message_probabilities(token_lists)
        picked = np.clip(np.where(labels == SPAM, spam, 1.0 - spam), 1e-7, 1.0)
        return binary_scores(labels, spam, loss=float(-np.mean(np.log(picked))))

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.learning_rate)

    def scale_learning_rate(self, factor: float) -> None:
        self.optimizer.learning_rate.assign(self.optimizer.learning_rate * factor)

    def snapshot(self) -> list[np.ndarray]:
        """Every weight of the network and the table, to restore the best epoch later."""
        return [w.numpy() for w in [*self.model.all_weights, self.table]]

    def restore(self, snapshot: list[np.ndarray]) -> None:
        """Back to a :meth:`snapshot`, in eval mode."""
        for variable, value in zip([*self.model.all_weights, self.table], snapshot):
            variable.assign(value)
        self.model.eval()

    def tuned_vectors(self, vocab: Sequence[str]) -> WordVectors:
        """The table's current rows as word vectors (what a version ships)."""
        return WordVectors(list(vocab), self.table.numpy())
