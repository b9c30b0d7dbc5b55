"""Skip-gram (center, context) pairs from id streams, vectorized with numpy.

Done in numpy rather than in a Python loop over positions because a pass over the corpus
yields about a million pairs and is redone every epoch: the loop would cost more than training.
Pairs never cross message boundaries (two SMS side by side are unrelated), and every random
choice — which frequent words are dropped, each center's window, the order — comes from one
seeded generator, so the same seed and epoch give the same pairs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def keep_probabilities(counts: np.ndarray, threshold: float) -> np.ndarray:
    """word2vec's subsampling: P(keep) = (sqrt(f / t) + 1) · t / f, capped at 1.

    ``f`` is a word's share of all tokens. Very frequent words ("的", "x") carry little about
    their neighbours and would dominate the pairs; dropping most of their occurrences also
    widens the effective window of the words that remain. ``threshold <= 0`` keeps everything.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if threshold <= 0:
        return np.ones_like(counts)
    freq = counts / max(counts.sum(), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (np.sqrt(freq / threshold) + 1.0) * threshold / freq
    return np.where(freq > 0, np.minimum(keep, 1.0), 1.0)


def flatten(sentences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate messages into one id stream plus each position's message number."""
    if not sentences:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    ids = np.concatenate([np.asarray(s, dtype=np.int32) for s in sentences])
    lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    owner = np.repeat(np.arange(len(sentences), dtype=np.int32), lengths)
    return ids, owner


def skipgram_pairs(ids: np.ndarray, owner: np.ndarray, window: int, rng: np.random.Generator,
                   keep: np.ndarray | None = None, shuffle: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """All (center, context) pairs of one epoch as two int32 arrays.

    ``ids``/``owner`` come from :func:`flatten`. ``keep`` (per vocabulary id) subsamples tokens
    first. As in word2vec, each center draws its own window ``b`` uniformly from 1..``window``
    and pairs with the words at most ``b`` positions away in the same message, which weighs
    near neighbours more than far ones.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    ids = np.asarray(ids, dtype=np.int32)
    owner = np.asarray(owner)
    if ids.shape != owner.shape:
        raise ValueError("ids and owner must have the same length")
    if keep is not None and len(ids):
        mask = rng.random(len(ids)) < keep[ids]
        ids, owner = ids[mask], owner[mask]
    n = len(ids)
    reach = rng.integers(1, window + 1, size=n)
    centers: list[np.ndarray] = []
    contexts: list[np.ndarray] = []
    for d in range(1, min(window, n - 1) + 1):
        same = owner[:-d] == owner[d:]
        left, right = ids[:-d], ids[d:]
        forward = same & (reach[:-d] >= d)  # center i, context i + d
        backward = same & (reach[d:] >= d)  # center i + d, context i
        centers += [left[forward], right[backward]]
        contexts += [right[forward], left[backward]]
    if not centers:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    center = np.concatenate(centers)
    context = np.concatenate(contexts)
    if shuffle:
        order = rng.permutation(len(center))
        center, context = center[order], context[order]
    return center, context
