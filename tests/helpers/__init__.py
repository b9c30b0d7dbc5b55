"""Test equipment shared by the test modules (never imported by the package itself)."""
