"""Token lists → a frequency-ranked vocabulary and the id stream skip-gram trains on.

Row 0 is ``UNK`` and stands for every word seen fewer than ``min_count`` times, so the
classifier gets a learned vector (not noise) for words it has never met. The other words are
ranked by descending frequency (ties by the word itself, so the order is reproducible): the
NCE loss draws negatives from a log-uniform (Zipf) distribution over ids, which is only a fair
approximation of the unigram distribution when low ids are frequent words.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from antispam.features import UNK


@dataclass(frozen=True)
class Vocabulary:
    words: list[str]  # words[0] == UNK
    counts: np.ndarray  # int64 [len(words)]: occurrences in the corpus (UNK: all rare words)

    def __len__(self) -> int:
        return len(self.words)

    def index(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.words)}


def build_vocabulary(token_lists: Iterable[Sequence[str]], min_count: int = 3,
                     max_size: int | None = None) -> Vocabulary:
    """Keep words seen at least ``min_count`` times (at most ``max_size`` rows with UNK)."""
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be at least 1, got {max_size}")
    counter: Counter[str] = Counter()
    for tokens in token_lists:
        counter.update(tokens)
    # A corpus token spelled "UNK" would collide with the reserved row; it counts as rare.
    unk_count = counter.pop(UNK, 0)
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    kept = [(word, n) for word, n in ranked if n >= min_count]
    if max_size is not None:
        kept = kept[: max_size - 1]
    kept_total = sum(n for _, n in kept)
    unk_count += sum(counter.values()) - kept_total
    words = [UNK, *(word for word, _ in kept)]
    counts = np.array([unk_count, *(n for _, n in kept)], dtype=np.int64)
    return Vocabulary(words, counts)


def encode(token_lists: Iterable[Sequence[str]], vocab: Vocabulary) -> list[np.ndarray]:
    """Each message as an int32 array of vocabulary ids (rare words → 0, UNK)."""
    index = vocab.index()
    get = index.get
    return [np.fromiter((get(t, 0) for t in tokens), dtype=np.int32, count=len(tokens))
            for tokens in token_lists]
