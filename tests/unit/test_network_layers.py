"""The mask and the masked layers: padding never counts as a word, and everything traces."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from antispam.network.layers import MaskedMaxPool, MaskedMean, MaskedRNN, PaddingMask, padding_mask  # noqa: E402


def standalone(layer):
    """A layer used outside a TensorLayer model: no graph nodes to record."""
    layer._fix_nodes_for_layers()
    return layer


def batch(lengths: list[int], steps: int = 20, dim: int = 200, seed: int = 0) -> np.ndarray:
    """Random token vectors followed by all-zero padding, as the featurizer builds them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(lengths), steps, dim)).astype(np.float32)
    for row, length in enumerate(lengths):
        x[row, length:] = 0.0
    return x


def test_mask_marks_tokens_and_not_padding() -> None:
    x = batch([3, 0, 20])
    x[0, 1] = 0.0
    x[0, 1, 7] = 1e-3  # a vector with a single non-zero component is still a word
    mask = padding_mask(tf.constant(x)).numpy()
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(mask.sum(axis=1), [3, 0, 20])
    np.testing.assert_array_equal(standalone(PaddingMask())(tf.constant(x)).numpy(), mask)


def test_masked_mean_ignores_padding_and_handles_empty() -> None:
    x = batch([4, 0])
    mask = padding_mask(tf.constant(x))
    out = standalone(MaskedMean())([tf.constant(x), mask]).numpy()
    np.testing.assert_allclose(out[0], x[0, :4].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[1], np.zeros(200, np.float32))


def test_masked_max_pool_ignores_padding_even_when_padding_is_larger() -> None:
    values = -np.abs(batch([5, 0]))  # real values all negative: a zero from padding would win
    mask = tf.constant([[1.0] * 5 + [0.0] * 15, [0.0] * 20])
    out = standalone(MaskedMaxPool())([tf.constant(values), mask]).numpy()
    np.testing.assert_allclose(out[0], values[0, :5].max(axis=0))
    assert np.all(out[0] < 0)
    np.testing.assert_array_equal(out[1], np.zeros(200, np.float32))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
def test_masked_rnn_final_state_equals_running_on_the_tokens_alone(cell: str, reverse: bool) -> None:
    layer = standalone(MaskedRNN(8, cell=cell, reverse=reverse, in_channels=200))
    x = batch([3, 7, 20, 1], seed=1)
    full = layer([tf.constant(x), padding_mask(tf.constant(x))]).numpy()
    for row, length in enumerate([3, 7, 20, 1]):
        alone = x[row:row + 1, :length]
        expected = layer([tf.constant(alone), tf.ones((1, length))]).numpy()
        np.testing.assert_allclose(full[row], expected[0], rtol=1e-5, atol=1e-6)


def test_masked_rnn_sequences_are_zero_at_padding_and_in_input_order() -> None:
    layer = standalone(MaskedRNN(6, reverse=True, return_sequences=True, in_channels=200))
    x = batch([4])
    seq = layer([tf.constant(x), padding_mask(tf.constant(x))]).numpy()
    assert seq.shape == (1, 20, 6)
    assert np.all(seq[0, 4:] == 0)
    assert np.any(seq[0, 0] != 0)


def test_masked_rnn_traces_with_unknown_batch_and_has_gradients() -> None:
    layer = standalone(MaskedRNN(5, in_channels=200))

    @tf.function(input_signature=[tf.TensorSpec([None, 20, 200], tf.float32)])
    def run(x: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        with tf.GradientTape() as tape:
            out = layer([x, padding_mask(x)])
            loss = tf.reduce_sum(out)
        return out, tape.gradient(loss, layer.trainable_weights)

    out, grads = run(tf.constant(batch([2, 9, 0])))
    assert out.shape == (3, 5)
    np.testing.assert_array_equal(out.numpy()[2], np.zeros(5))  # no tokens: initial state
    assert len(grads) == 3 and all(g is not None for g in grads)
    assert [w.name.split("/")[-1] for w in layer.all_weights] == ["kernel:0", "recurrent_kernel:0", "bias:0"]


def test_masked_rnn_rejects_unknown_cell() -> None:
    with pytest.raises(ValueError, match="cell"):
        MaskedRNN(4, cell="tree")
