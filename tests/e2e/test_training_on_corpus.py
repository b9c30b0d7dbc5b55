"""Training on the real corpus (slow, needs ANTISPAM_DATA): acceptance checks on the real split.

The tiny-corpus training tests are unit tests: tests/unit/test_network_train.py.
"""

from __future__ import annotations

import pytest

pytest.importorskip("tensorlayer")

from antispam.features import WordVectors  # noqa: E402


@pytest.mark.slow
def test_rnn_on_the_real_corpus_beats_the_token_baseline(real_corpus) -> None:
    """Acceptance check on the real split: the default RNN beats TF-IDF + LR on jieba tokens."""
    from pathlib import Path

    from antispam.data import load_split
    from antispam.network.baselines import tfidf_baselines
    from antispam.network.train import train_classifier

    vectors_dir = Path("data/word2vec")
    if not (vectors_dir / "vectors.npy").is_file():
        pytest.skip("no word vectors in data/word2vec (run: antispam train word2vec)")
    split = load_split(real_corpus, progress=False)
    trained = train_classifier("rnn", split, WordVectors.load(vectors_dir), progress=False)
    baseline = tfidf_baselines(split)["tfidf_lr_jieba_tokens"]
    assert trained.test["f1"] > baseline["f1"]
    assert trained.test["accuracy"] > baseline["accuracy"]
