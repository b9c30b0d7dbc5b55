"""The skip-gram model: TensorLayer's ``Word2vecEmbedding`` with NCE loss, and its train step.

Why a hand-written sparse SGD step instead of ``tf.keras.optimizers.Adam``: a step touches a few
thousand rows of two ``[vocab, dim]`` matrices, but Adam (and any optimizer with dense slots)
rewrites every row every step — measured at about 22 ms per 512-pair step for a 10,000 × 200
vocabulary, far too slow for the time budget. Gradients of embedding lookups arrive as
``tf.IndexedSlices``; the step sums duplicate rows and updates only the rows present (about 8.6
ms per 1,024-pair step in the default run, with another training job on the two cores). Plain
SGD with linear decay is also what word2vec itself uses; sparse Adagrad was tried and gave
visibly worse vectors (most words' nearest neighbours were stop words). The step is a
``tf.function`` with a fixed input signature, traced once.

TensorFlow and TensorLayer are imported inside the functions: the CLI must stay cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf


class SkipGramModel:
    """Embeddings plus NCE weights, and one compiled training step over a batch of pairs."""

    def __init__(self, vocabulary_size: int, dim: int, num_sampled: int, *, seed: int = 0) -> None:
        import tensorflow as tf

        if vocabulary_size < 2:
            raise ValueError(f"vocabulary too small to train ({vocabulary_size} rows)")
        if not 0 < num_sampled < vocabulary_size:
            raise ValueError(f"negatives must be in 1..{vocabulary_size - 1} for this "
                             f"vocabulary, got {num_sampled}")
        tf.random.set_seed(seed)  # initial weights and the NCE negative sampler
        self.vocabulary_size = vocabulary_size
        self.dim = dim
        self.network = _build_network(vocabulary_size, dim, num_sampled, seed)
        self.network.train()
        self.layer = self.network.word2vec
        self.variables = [self.layer.embeddings, self.layer.nce_weights, self.layer.nce_biases]
        self._step = tf.function(
            self._train_step,
            input_signature=[
                tf.TensorSpec([None], tf.int32, name="centers"),
                tf.TensorSpec([None], tf.int32, name="contexts"),
                tf.TensorSpec([], tf.float32, name="learning_rate"),
            ],
        )

    def train_step(self, centers: np.ndarray, contexts: np.ndarray, learning_rate: float) -> float:
        """One update on a batch of (center, context) pairs; returns the batch's mean NCE loss."""
        return float(self._step(centers, contexts, np.float32(learning_rate)))

    def _train_step(self, centers: "tf.Tensor", contexts: "tf.Tensor",
                    learning_rate: "tf.Tensor") -> "tf.Tensor":
        import tensorflow as tf

        labels = tf.expand_dims(contexts, 1)
        with tf.GradientTape() as tape:
            _, loss = self.network([centers, labels])
        grads = tape.gradient(loss, self.variables)
        for var, grad in zip(self.variables, grads):
            _sparse_sgd(var, grad, learning_rate)
        return loss

    def embeddings(self) -> np.ndarray:
        return self.layer.embeddings.numpy().astype(np.float32)


def _sparse_sgd(var: "tf.Variable", grad: Any, learning_rate: "tf.Tensor") -> None:
    """``var -= learning_rate * grad`` on the rows the batch touched, duplicates summed first."""
    import tensorflow as tf

    if not isinstance(grad, tf.IndexedSlices):  # pragma: no cover - lookups give slices
        grad = tf.IndexedSlices(grad, tf.range(tf.shape(grad)[0]))
    rows, position = tf.unique(grad.indices)
    values = tf.math.unsorted_segment_sum(grad.values, position, tf.shape(rows)[0])
    var.scatter_sub(tf.IndexedSlices(learning_rate * values, rows))


def noise_log_expected_counts(vocabulary_size: int, num_sampled: int) -> np.ndarray:
    """log E[times each id is drawn] by the NCE loss' log-uniform sampler, per id.

    ``tf.nn.nce_loss`` subtracts this from every logit. Rare ids are drawn so seldom that the
    correction is large (about +7 for the rarest of 10,000), so with zero biases every sampled
    negative starts almost certainly "wrong" and all of them push the embeddings the same way:
    the vectors collapse onto one shared direction (cosine ~1 between unrelated words) long
    before the biases learn to cancel it. Starting each bias at this value starts every logit
    near 0 — the model begins as the noise distribution, which is what NCE measures against.
    The sampler draws without replacement; ``num_sampled`` tries approximate its retries.
    """
    ids = np.arange(vocabulary_size, dtype=np.float64)
    p = (np.log(ids + 2.0) - np.log(ids + 1.0)) / np.log(vocabulary_size + 1.0)
    expected = -np.expm1(num_sampled * np.log1p(-p))
    return np.log(expected).astype(np.float32)


def _ArrayInitializer(values: np.ndarray) -> Any:
    """A TensorLayer initializer that returns ``values`` (TensorLayer calls ``init(shape=...)``)."""
    import tensorflow as tf

    def init(shape: tuple[int, ...], dtype: Any = tf.float32) -> "tf.Tensor":
        if tuple(shape) != values.shape:
            raise ValueError(f"initializer holds shape {values.shape}, asked for {tuple(shape)}")
        return tf.constant(values, dtype=dtype)

    return init


def _build_network(vocabulary_size: int, dim: int, num_sampled: int, seed: int) -> Any:
    """A dynamic TensorLayer model around the one layer (a bare layer cannot be traced)."""
    import tensorlayer as tl

    class SkipGram(tl.models.Model):
        def __init__(self) -> None:
            super().__init__()  # auto-named: TensorLayer refuses a model name used twice
            # word2vec.c's initialization: small input vectors, so a rare word's vector is
            # mostly what training taught it rather than initial noise; output weights near 0.
            self.word2vec = tl.layers.Word2vecEmbedding(
                vocabulary_size=vocabulary_size,
                embedding_size=dim,
                num_sampled=num_sampled,
                activate_nce_loss=True,
                nce_loss_args={},
                E_init=tl.initializers.random_uniform(minval=-0.5 / dim, maxval=0.5 / dim, seed=seed),
                nce_W_init=tl.initializers.truncated_normal(stddev=0.1 / np.sqrt(dim), seed=seed + 1),
                nce_b_init=_ArrayInitializer(noise_log_expected_counts(vocabulary_size, num_sampled)),
                name="word2vec",
            )

        def forward(self, inputs: list[Any]) -> Any:
            return self.word2vec(inputs)

    return SkipGram()
