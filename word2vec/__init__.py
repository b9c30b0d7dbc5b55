"""Word vectors for the classifiers (installed as ``antispam.word2vec``): skip-gram with NCE
loss on TensorLayer's ``Word2vecEmbedding``, trained on the training split only.

Modules: ``vocab`` (frequency-ranked vocabulary, UNK at row 0, id streams), ``skipgram``
(vectorized, seeded pair generation), ``model`` (the TensorLayer model and its compiled sparse
train step), ``train`` (settings, the training loop, save + report, ``ensure_word2vec``),
``cli`` (``antispam train word2vec``). Importing this package loads nothing heavy.
"""
