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
