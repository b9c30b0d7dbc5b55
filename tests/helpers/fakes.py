"""Moved to :mod:`antispam.testing.fakes` (scripts use it too, and scripts never import tests);
kept as an alias so branches written before the move still import."""

from antispam.testing.fakes import FakeBackend, FakeFeedbackStore

__all__ = ["FakeBackend", "FakeFeedbackStore"]
