"""Moved to :mod:`antispam.testing.tinymodel` (scripts use it too, and scripts never import
tests); kept as an alias so branches written before the move still import."""

from antispam.testing.tinymodel import PASS_TEXT, SPAM_TEXT, build_version, tiny_vectors, write_warmup

__all__ = ["PASS_TEXT", "SPAM_TEXT", "build_version", "tiny_vectors", "write_warmup"]
