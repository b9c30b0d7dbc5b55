"""PredictionCache: LRU order, one version at a time, counters."""

from __future__ import annotations

import pytest

from antispam.cache import CachedScore, PredictionCache


def score(p: float) -> CachedScore:
    return CachedScore(p, "cnn", "local")


def test_hit_after_put_and_counters():
    cache = PredictionCache(10)
    assert cache.get("a", 1) is None
    cache.put("a", 1, score(0.9))
    assert cache.get("a", 1) == score(0.9)
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.hit_ratio == 0.5


def test_least_recently_used_entry_goes_first():
    cache = PredictionCache(2)
    cache.put("a", 1, score(0.1))
    cache.put("b", 1, score(0.2))
    cache.get("a", 1)  # a is now the most recent
    cache.put("c", 1, score(0.3))
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) == score(0.1)
    assert cache.get("c", 1) == score(0.3)
    assert len(cache) == 2


def test_a_new_version_invalidates_everything():
    cache = PredictionCache(10)
    cache.put("a", 1, score(0.9))
    assert cache.get("a", 2) is None  # the backend switched: old scores are gone
    assert len(cache) == 0 and cache.invalidations == 1
    assert cache.get("a", 1) is None  # and switching back does not resurrect them


def test_a_score_from_a_version_lookups_no_longer_ask_for_is_dropped():
    cache = PredictionCache(10)
    cache.get("a", 2)  # lookups now follow version 2
    cache.put("a", 1, score(0.9))  # a request that was in flight across the switch
    assert cache.get("a", 2) is None
    assert cache.version == 2


def test_disabled_cache_stores_nothing_and_counts_nothing():
    cache = PredictionCache(0)
    cache.put("a", 1, score(0.9))
    assert cache.get("a", 1) is None
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)


def test_unknown_version_never_hits():
    cache = PredictionCache(10)
    assert cache.get("a", None) is None
    assert cache.misses == 0


def test_negative_size_is_rejected():
    with pytest.raises(ValueError):
        PredictionCache(-1)
