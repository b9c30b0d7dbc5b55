"""Tokens → the ``[20, 200]`` float32 tensor the classifiers read (DESIGN.md §3).

Word vectors are stored in a format numpy alone can read, because the serving process must be
able to build tensors without TensorFlow or TensorLayer:

* ``vocab.txt``: one word per line, UTF-8; line ``i`` is row ``i`` of the matrix; row 0 is
  ``UNK`` (the vector for every word outside the vocabulary).
* ``vectors.npy``: float32 matrix ``[len(vocab), dim]`` (``numpy.save`` format).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from antispam.atomic import atomic_write_bytes

MAX_LEN = 20
DIM = 200
UNK = "UNK"
VOCAB_FILE = "vocab.txt"
VECTORS_FILE = "vectors.npy"


@dataclass
class WordVectors:
    """A vocabulary and its matrix, plus the lookup structures the featurizer needs."""

    vocab: list[str]
    matrix: np.ndarray
    _index: dict[str, int] = field(init=False, repr=False)
    _padded: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.vocab or self.vocab[0] != UNK:
            raise ValueError(f"vocabulary must start with {UNK!r}")
        self.matrix = np.ascontiguousarray(self.matrix, dtype=np.float32)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.vocab):
            raise ValueError(
                f"matrix shape {self.matrix.shape} does not match vocabulary of {len(self.vocab)}"
            )
        self._index = {word: i for i, word in enumerate(self.vocab)}
        if len(self._index) != len(self.vocab):
            raise ValueError("vocabulary has duplicate words")
        # One extra all-zero row at the end: padding positions index it, so a whole batch is
        # built by a single fancy-indexing call.
        self._padded = np.vstack([self.matrix, np.zeros((1, self.dim), np.float32)])

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def pad_id(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def ids(self, tokens: Sequence[str], max_len: int = MAX_LEN) -> np.ndarray:
        """First ``max_len`` tokens as row ids; unknown words → 0 (UNK), padding → ``pad_id``."""
        out = np.full(max_len, self.pad_id, dtype=np.int32)
        get = self._index.get
        for i, token in enumerate(tokens[:max_len]):
            out[i] = get(token, 0)
        return out

    def featurize(self, tokens: Sequence[str], max_len: int = MAX_LEN) -> np.ndarray:
        """One message → float32 ``[max_len, dim]``."""
        return self._padded[self.ids(tokens, max_len)]

    def featurize_batch(self, batch: Sequence[Sequence[str]], max_len: int = MAX_LEN) -> np.ndarray:
        """Many messages → float32 ``[n, max_len, dim]`` with one gather."""
        ids = np.full((len(batch), max_len), self.pad_id, dtype=np.int32)
        get = self._index.get
        for row, tokens in enumerate(batch):
            for col, token in enumerate(tokens[:max_len]):
                ids[row, col] = get(token, 0)
        return self._padded[ids]

    def nearest(self, word: str, k: int = 5) -> list[tuple[str, float]]:
        """Cosine nearest neighbours, for a person to sanity-check the vectors."""
        if word not in self._index:
            return []
        norms = np.linalg.norm(self.matrix, axis=1) + 1e-8
        unit = self.matrix / norms[:, None]
        sims = unit @ unit[self._index[word]]
        order = [i for i in np.argsort(-sims) if i != self._index[word] and i != 0][:k]
        return [(self.vocab[i], float(sims[i])) for i in order]

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write each file atomically.

        Readers of a live folder could still pair a new vocabulary with an old matrix between the
        two renames; :meth:`load` then fails on the shape check instead of using wrong vectors.
        Model versions avoid the window entirely: their vectors are written before the version
        folder is renamed into view.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(directory / VOCAB_FILE, ("\n".join(self.vocab) + "\n").encode("utf-8"))
        buffer = io.BytesIO()
        np.save(buffer, self.matrix)
        atomic_write_bytes(directory / VECTORS_FILE, buffer.getvalue())

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "WordVectors":
        directory = Path(directory)
        vocab_path, vectors_path = directory / VOCAB_FILE, directory / VECTORS_FILE
        for path in (vocab_path, vectors_path):
            if not path.is_file():
                raise FileNotFoundError(f"word vectors incomplete: {path} is missing")
        vocab = vocab_path.read_text(encoding="utf-8").split("\n")
        if vocab and vocab[-1] == "":
            vocab.pop()
        matrix = np.load(vectors_path, allow_pickle=False)
        return cls(vocab, matrix)

