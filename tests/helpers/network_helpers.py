"""Shared fixtures for the classifier tests: a tiny split, random 200-d vectors, tiny models.

Session-scoped so the whole suite trains each tiny network once; the model input is still the
real ``[n, 20, 200]`` contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from antispam.data import Split, load_split
from antispam.features import DIM, UNK, WordVectors
from antispam.text import default_segmenter
from tests.helpers.corpus import NUMBERS, TINY_PASS, TINY_SPAM, write_corpus


def random_vectors(split: Split, seed: int = 0, zero_unk: bool = False) -> WordVectors:
    """Every token of the split (sorted, after UNK) with a random vector."""
    seg = default_segmenter()
    words = sorted({t for part in (split.train, split.validation, split.test)
                    for s in part for t in seg.tokenize(s.text)} - {UNK})
    matrix = np.random.default_rng(seed).normal(0, 0.3, (len(words) + 1, DIM)).astype(np.float32)
    if zero_unk:
        matrix[0] = 0.0
    return WordVectors([UNK, *words], matrix)


@pytest.fixture(scope="session")
def tiny_corpus_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spam = [f"{line} 编号 {n}" for n in NUMBERS for line in TINY_SPAM]
    passed = [f"{line} 第 {n} 次" for n in NUMBERS for line in TINY_PASS]
    return write_corpus(tmp_path_factory.mktemp("corpus"), spam, passed)


@pytest.fixture(scope="session")
def tiny_split(tiny_corpus_path: Path) -> Split:
    return load_split(tiny_corpus_path, progress=False)


@pytest.fixture(scope="session")
def tiny_vectors(tiny_split: Split) -> WordVectors:
    return random_vectors(tiny_split)



def train_tiny(kind: str, split: Split, vectors: WordVectors, **settings: object) -> object:
    from antispam.network.train import ClassifierSettings, train_classifier

    options = {"epochs": 4, "batch_size": 16, "learning_rate": 3e-3, "patience": 4, **settings}
    return train_classifier(kind, split, vectors, ClassifierSettings(**options), progress=False)


@pytest.fixture(scope="session")
def trained_cnn(tiny_split: Split, tiny_vectors: WordVectors) -> object:
    return train_tiny("cnn", tiny_split, tiny_vectors)


@pytest.fixture(scope="session")
def exported_cnn(tmp_path_factory: pytest.TempPathFactory, trained_cnn: object, tiny_split: Split,
                 tiny_vectors: WordVectors) -> tuple[Path, int]:
    """(model_dir, version) of the tiny CNN exported once for the whole session."""
    from antispam.network.export import export_version

    model_dir = tmp_path_factory.mktemp("models") / "cnn"
    texts = [s.text for s in tiny_split.train[:6]]
    version = export_version(trained_cnn, tiny_vectors, model_dir, texts, {"note": "tiny"})
    return model_dir, version
