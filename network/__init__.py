"""The classifiers (installed as ``antispam.network``): TensorLayer CNN, RNN and MLP over the
``[n, 20, 200]`` word-vector tensor, their training, export as self-contained SavedModel
versions, and evaluation through the serving path.

Modules: ``layers`` (mask, masked pooling, graph-safe masked LSTM/GRU), ``cnn``/``rnn``/``mlp``
(the networks), ``models`` (by name), ``train`` (fit, select on validation, score test once;
the network and its compiled step in ``step``, early stopping and the LR plateau in ``stopping``),
``metrics``, ``export`` + ``warmup`` (SavedModel version), ``evaluate`` (a version on labelled
texts, latency), ``baselines`` (TF-IDF + logistic regression), ``report`` (PNG + JSON), ``cli``.
Importing this package loads nothing heavy; TensorFlow comes in with the modules that need it.
:func:`quiet_libraries` is here for every command that trains or evaluates.
"""

from __future__ import annotations

import logging
import os


def quiet_libraries(verbose: bool) -> None:
    """TensorLayer logs every layer it builds and TensorFlow every asset it writes; keep the
    output to our own progress and results unless ``-v`` asks for more."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not verbose:
        for name in ("tensorlayer", "tensorflow", "absl"):
            logging.getLogger(name).setLevel(logging.WARNING)
