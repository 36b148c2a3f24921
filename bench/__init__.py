"""Benchmarks: timing goals are measured here, never asserted in tests."""
