"""Skip-gram pair generation (antispam.word2vec.skipgram): windows, boundaries, seeds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antispam.word2vec.skipgram import flatten, keep_probabilities, skipgram_pairs


def positions(lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Messages whose ids are their global positions, so a pair tells where its words were."""
    sentences, start = [], 0
    for n in lengths:
        sentences.append(np.arange(start, start + n, dtype=np.int32))
        start += n
    return flatten(sentences)


def test_flatten_records_which_message_each_token_came_from() -> None:
    ids, owner = flatten([np.array([5, 6]), np.array([], np.int32), np.array([7])])
    assert ids.tolist() == [5, 6, 7]
    assert owner.tolist() == [0, 0, 2]


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 12), max_size=8), window=st.integers(1, 6),
       seed=st.integers(0, 2**32 - 1))
def test_pairs_stay_within_window_and_message(lengths: list[int], window: int, seed: int) -> None:
    ids, owner = positions(lengths)
    center, context = skipgram_pairs(ids, owner, window, np.random.default_rng(seed))
    assert center.dtype == np.int32 and context.dtype == np.int32
    distance = np.abs(center.astype(np.int64) - context)
    assert np.all(distance >= 1)
    assert np.all(distance <= window)
    assert np.array_equal(owner[center], owner[context])
    # Each ordered (center, context) pair appears at most once per epoch.
    assert len(set(zip(center.tolist(), context.tolist()))) == len(center)


def test_window_one_gives_every_neighbour_both_ways() -> None:
    ids, owner = positions([4, 3])
    center, context = skipgram_pairs(ids, owner, 1, np.random.default_rng(0))
    expected = {(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (4, 5), (5, 4), (5, 6), (6, 5)}
    assert set(zip(center.tolist(), context.tolist())) == expected
    assert len(center) == len(expected)


def test_dynamic_window_weighs_near_words_more() -> None:
    ids, owner = positions([200] * 20)
    center, context = skipgram_pairs(ids, owner, 4, np.random.default_rng(1))
    counts = np.bincount(np.abs(center.astype(np.int64) - context), minlength=5)[1:]
    assert counts[0] > counts[1] > counts[2] > counts[3] > 0


def test_same_seed_same_pairs_and_other_seed_other_pairs() -> None:
    ids, owner = positions([30, 25, 40])
    keep = np.full(len(ids), 0.7)
    a = skipgram_pairs(ids, owner, 5, np.random.default_rng([7, 0]), keep)
    b = skipgram_pairs(ids, owner, 5, np.random.default_rng([7, 0]), keep)
    c = skipgram_pairs(ids, owner, 5, np.random.default_rng([7, 1]), keep)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not (len(a[0]) == len(c[0]) and np.array_equal(a[0], c[0]))


def test_subsampling_drops_a_word_kept_with_probability_zero() -> None:
    ids = np.array([0, 1, 2, 1, 0, 2, 1], np.int32)
    owner = np.zeros(len(ids), np.int32)
    keep = np.array([1.0, 0.0, 1.0])
    center, context = skipgram_pairs(ids, owner, 3, np.random.default_rng(0), keep)
    assert len(center) > 0
    assert 1 not in center and 1 not in context


def test_no_pairs_from_single_word_messages() -> None:
    ids, owner = positions([1, 1, 0])
    center, context = skipgram_pairs(ids, owner, 5, np.random.default_rng(0))
    assert len(center) == 0 and len(context) == 0


def test_bad_window_is_rejected() -> None:
    ids, owner = positions([3])
    with pytest.raises(ValueError, match="window"):
        skipgram_pairs(ids, owner, 0, np.random.default_rng(0))


def test_keep_probabilities_drop_only_frequent_words() -> None:
    counts = np.array([10_000, 1_000, 10, 1, 0])
    keep = keep_probabilities(counts, 1e-3)
    assert np.all((keep > 0) & (keep <= 1))
    assert keep[0] < keep[1] < 1.0
    assert keep[2] == keep[3] == keep[4] == 1.0
    assert np.all(keep_probabilities(counts, 0.0) == 1.0)
