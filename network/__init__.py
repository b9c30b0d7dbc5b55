"""The classifiers (installed as ``antispam.network``): TensorLayer CNN, RNN and MLP over the
``[n, 20, 200]`` word-vector tensor, their training, export as self-contained SavedModel
versions, and evaluation through the serving path.

Modules: ``layers`` (mask, masked pooling, graph-safe masked LSTM/GRU), ``cnn``/``rnn``/``mlp``
(the networks), ``models`` (by name), ``train`` (fit, select on validation, score test once),
``metrics``, ``export`` + ``warmup`` (SavedModel version), ``evaluate`` (a version on labelled
texts, latency), ``baselines`` (TF-IDF + logistic regression), ``report`` (PNG + JSON), ``cli``.
Importing this package loads nothing heavy; TensorFlow comes in with the modules that need it.
"""
