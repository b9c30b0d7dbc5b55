"""TensorLayer layers the classifiers need that TensorLayer 2.2.5 lacks or cannot export.

Padding: the featurizer (:mod:`antispam.features`) pads a message to 20 rows with all-zero
vectors, and every real token — including an unknown word, which gets the ``UNK`` row — has a
vector with at least one non-zero component (:func:`antispam.network.train.prepare_vectors`
makes sure of it before training). So the model derives its own mask from the input,
``reduce_any(inputs != 0, axis=-1)``, and needs no second input: the serving signature stays one
float tensor ``[n, 20, 200]``, and a client cannot send a mask that disagrees with the vectors.

Every layer here is plain TensorFlow ops inside ``forward``, with no Python branching on tensor
values, so a model built from them traces into a ``tf.function`` graph and exports as a
SavedModel (docs/architecture.md#stack-facts).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorlayer as tl


def padding_mask(inputs: tf.Tensor) -> tf.Tensor:
    """float32 ``[n, steps]``: 1.0 where a token is, 0.0 where the featurizer padded."""
    return tf.cast(tf.reduce_any(tf.not_equal(inputs, 0.0), axis=-1), tf.float32)


class _WeightlessLayer(tl.layers.Layer):
    """A layer with no weights: built at construction, so it needs no input shape."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.build(None)
        self._built = True

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(name={self.name!r})"

    def build(self, inputs_shape: Any) -> None:
        pass


class PaddingMask(_WeightlessLayer):
    """``[n, steps, dim]`` word vectors → ``[n, steps]`` float mask of real tokens."""

    def forward(self, inputs: tf.Tensor) -> tf.Tensor:
        return padding_mask(inputs)


class MaskedMean(_WeightlessLayer):
    """``[values [n, steps, d], mask [n, steps]]`` → mean of the real steps ``[n, d]``.

    An empty message (no tokens at all) averages to zeros instead of dividing by zero.
    """

    def forward(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        values, mask = inputs
        total = tf.reduce_sum(values * mask[:, :, None], axis=1)
        count = tf.reduce_sum(mask, axis=1, keepdims=True)
        return total / tf.maximum(count, 1.0)


class MaskedMaxPool(_WeightlessLayer):
    """``[values [n, steps, d], mask [n, steps]]`` → max over the real steps ``[n, d]``.

    TensorLayer's ``MaxPool1d`` would also pool over padding positions, where a convolution
    still outputs ``act(bias)``; a message's score would then depend on how short it is. Here
    padded steps are pushed far below any real value before the max, and an empty message
    pools to zeros.
    """

    def forward(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        values, mask = inputs
        keep = mask[:, :, None] > 0
        pooled = tf.reduce_max(tf.where(keep, values, tf.fill(tf.shape(values), -1e9)), axis=1)
        any_token = tf.reduce_any(mask > 0, axis=1, keepdims=True)
        return tf.where(any_token, pooled, tf.zeros_like(pooled))


class MaskedRNN(tl.layers.Layer):
    """A masked LSTM or GRU over ``[values [n, steps, d], mask [n, steps]]``, graph-safe.

    Why not ``tl.layers.RNN``: in TensorLayer 2.2.5 it calls ``cell.get_initial_state``, which
    Keras 3 cells no longer accept, and with a ``tf_keras`` cell it recomputes sequence lengths
    and loops over them in Python, so it runs eagerly but cannot be traced into a SavedModel
    (docs/architecture.md#stack-facts). This layer owns its weights (created with TensorLayer's ``_get_weights`` so
    ``model.all_weights`` and the export see them) and runs the recurrence with ``tf.scan`` over
    the time axis: one graph loop whatever the batch, traceable, differentiable.

    How padding is kept out: at each step the new state is ``mask * new + (1 - mask) * old``,
    so a padded step carries the state through unchanged. The state after the last step is
    therefore the state after the last real token, and padding never counts as a word. With
    ``reverse=True`` the sequence is read backwards (the padding then comes first and the zero
    initial state is carried through it), which gives the backward half of a bidirectional
    RNN without per-example lengths.

    Output: the final hidden state ``[n, units]``, or with ``return_sequences=True`` the hidden
    state at every step ``[n, steps, units]`` (zeros at padded steps), in input order.
    """

    def __init__(self, units: int, cell: str = "lstm", reverse: bool = False,
                 return_sequences: bool = False, in_channels: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(name)
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        self.units = units
        self.cell = cell
        self.reverse = reverse
        self.return_sequences = return_sequences
        self.in_channels = in_channels
        if in_channels is not None:
            self.build(None)
            self._built = True

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(units={self.units}, cell={self.cell!r}, "
                f"reverse={self.reverse}, return_sequences={self.return_sequences}, name={self.name!r})")

    @property
    def gates(self) -> int:
        return 4 if self.cell == "lstm" else 3

    def build(self, inputs_shape: Any) -> None:
        if self.in_channels is None:
            self.in_channels = int(inputs_shape[0][-1])
        width = self.gates * self.units
        self.kernel = self._get_weights("kernel", (self.in_channels, width),
                                        init=tl.initializers.truncated_normal(stddev=0.05))
        self.recurrent_kernel = self._get_weights("recurrent_kernel", (self.units, width),
                                                  init=_orthogonal_columns(self.units, self.gates))
        bias = [0.0] * width
        if self.cell == "lstm":
            # Forget-gate bias 1 (Jozefowicz et al., 2015): remember by default early on.
            bias[self.units:2 * self.units] = [1.0] * self.units
        self.bias = self._get_weights("bias", (width,), init=tl.initializers.constant(value=0.0))
        self.bias.assign(bias)

    def forward(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        values, mask = inputs
        if self.reverse:
            values, mask = tf.reverse(values, axis=[1]), tf.reverse(mask, axis=[1])
        # Input projections for all steps in one matmul; only the recurrence is sequential.
        projected = tf.einsum("ntd,dg->ntg", values, self.kernel) + self.bias
        time_major = (tf.transpose(projected, [1, 0, 2]), tf.transpose(mask, [1, 0])[:, :, None])
        batch = tf.shape(values)[0]
        zeros = tf.zeros([batch, self.units], dtype=values.dtype)
        step = self._lstm_step if self.cell == "lstm" else self._gru_step
        _, hidden = tf.scan(step, time_major, initializer=(zeros, zeros))
        # hidden: [steps, n, units]; the last entry is the state after the last real token.
        if not self.return_sequences:
            return hidden[-1]
        sequence = tf.transpose(hidden, [1, 0, 2]) * (mask[:, :, None])
        return tf.reverse(sequence, axis=[1]) if self.reverse else sequence

    def _lstm_step(self, state: tuple[tf.Tensor, tf.Tensor], inputs: tuple[tf.Tensor, tf.Tensor]
                   ) -> tuple[tf.Tensor, tf.Tensor]:
        cell, hidden = state
        x, m = inputs
        z = x + tf.matmul(hidden, self.recurrent_kernel)
        i, f, g, o = tf.split(z, 4, axis=1)
        new_cell = tf.sigmoid(f) * cell + tf.sigmoid(i) * tf.tanh(g)
        new_hidden = tf.sigmoid(o) * tf.tanh(new_cell)
        return (m * new_cell + (1.0 - m) * cell, m * new_hidden + (1.0 - m) * hidden)

    def _gru_step(self, state: tuple[tf.Tensor, tf.Tensor], inputs: tuple[tf.Tensor, tf.Tensor]
                  ) -> tuple[tf.Tensor, tf.Tensor]:
        _, hidden = state
        x, m = inputs
        xz, xr, xh = tf.split(x, 3, axis=1)
        uz, ur, uh = tf.split(self.recurrent_kernel, 3, axis=1)
        z = tf.sigmoid(xz + tf.matmul(hidden, uz))
        r = tf.sigmoid(xr + tf.matmul(hidden, ur))
        candidate = tf.tanh(xh + tf.matmul(r * hidden, uh))
        new_hidden = z * hidden + (1.0 - z) * candidate
        kept = m * new_hidden + (1.0 - m) * hidden
        return (kept, kept)


def _orthogonal_columns(units: int, blocks: int) -> Any:
    """Initializer: one orthogonal ``units x units`` block per gate, side by side.

    Orthogonal recurrent weights keep the state's scale steady over the 20 steps at the start
    of training, which is what Keras' LSTM does too.
    """

    def init(shape: Any, dtype: Any = tf.float32) -> tf.Tensor:
        parts = []
        for _ in range(blocks):
            matrix = tf.random.normal((units, units), dtype=tf.float32)
            q, r = tf.linalg.qr(matrix)
            parts.append(q * tf.sign(tf.linalg.diag_part(r))[None, :])
        return tf.cast(tf.concat(parts, axis=1), dtype)

    return init
