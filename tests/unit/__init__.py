"""Unit tests: pure functions and single modules, fast."""
