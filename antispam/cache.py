"""Dedup cache: bulk spam arrives as bursts of identical texts, so repeats skip the model.

Keyed by the *normalized* text (two texts that normalize alike produce the same tokens and so
the same score) and the model version that scored it. The cache holds one version at a time: a
lookup under another version empties it, so a hot swap never answers with the old
model's scores. It lives in the event loop's thread only, so it takes no locks.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class CachedScore:
    spam_probability: float
    model_name: str
    backend: str
    tokens: int = 0  # tokens of the normalized text
    scored: int = 0  # of those, how many the version's windows read (the rest cut by its cap)


class PredictionCache:
    """An LRU of ``normalized text -> CachedScore`` for the single version it currently holds."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError(f"cache size must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self.version: int | None = None
        self._entries: OrderedDict[str, CachedScore] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def __len__(self) -> int:
        return len(self._entries)

    def _switch(self, version: int) -> None:
        if version != self.version:
            if self._entries:
                self.invalidations += 1
                self._entries.clear()
            self.version = version

    def get(self, normalized: str, version: int | None) -> CachedScore | None:
        """The score for ``normalized`` under ``version``, counting a hit or a miss."""
        if not self.enabled or version is None:
            return None
        self._switch(version)
        entry = self._entries.get(normalized)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(normalized)
        self.hits += 1
        return entry

    def put(self, normalized: str, version: int, entry: CachedScore) -> None:
        """Store a score, unless it comes from a version other than the one lookups ask for.

        Lookups follow the backend's current version; a score that arrives from a request that
        was in flight across a switch belongs to the old version and is dropped, not allowed to
        flip the cache back.
        """
        if not self.enabled:
            return
        if self.version is None:
            self.version = version
        elif version != self.version:
            return
        self._entries[normalized] = entry
        self._entries.move_to_end(normalized)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
