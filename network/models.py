"""Which networks exist, by the name the CLI and the retrain job use for them."""

from __future__ import annotations

from typing import Any, Callable

KINDS = ("cnn", "rnn", "mlp")


def build_model(kind: str, dropout: float, **options: Any) -> Any:
    """A fresh TensorLayer static model taking ``[n, 20, 200]`` and returning two logits.

    Imported lazily so ``antispam train --help`` does not load TensorFlow. The TensorLayer
    model gets an automatic name: TensorLayer refuses a model name twice in one process, and
    the retrain job trains many models in one process.
    """
    if kind == "cnn":
        from antispam.network import cnn as module
    elif kind == "rnn":
        from antispam.network import rnn as module
    elif kind == "mlp":
        from antispam.network import mlp as module
    else:
        raise ValueError(f"unknown classifier {kind!r}; choose one of {', '.join(KINDS)}")
    builder: Callable[..., Any] = module.build_model
    return builder(dropout=dropout, **options)


class Ensemble:
    """Several trained networks of one kind read as one model (``--members``).

    Its output is the log of the members' mean softmax. Every consumer of a model (the trainer's
    ``predict_proba``, the export's serving function, the export check) applies a softmax to the
    output, and ``softmax(log(mean p)) = mean p`` because ``mean p`` sums to one — so an ensemble
    needs no special case downstream, and the exported signature stays ``inputs`` → ``probabilities``
    with the windows' probabilities averaged over the members, before the service folds them.
    Inference only: the members are trained one by one (:func:`antispam.network.train.train_classifier`).
    """

    def __init__(self, networks: list[Any]) -> None:
        if len(networks) < 2:
            raise ValueError("an ensemble needs at least two networks")
        self.networks = list(networks)

    @property
    def all_weights(self) -> list[Any]:
        return [w for network in self.networks for w in network.all_weights]

    @property
    def trainable_weights(self) -> list[Any]:
        return [w for network in self.networks for w in network.trainable_weights]

    def eval(self) -> None:
        for network in self.networks:
            network.eval()

    def train(self) -> None:
        for network in self.networks:
            network.train()

    def __call__(self, inputs: Any) -> Any:
        import tensorflow as tf

        probabilities = tf.add_n([tf.nn.softmax(network(inputs), axis=-1) for network in self.networks])
        return tf.math.log(probabilities / float(len(self.networks)))
