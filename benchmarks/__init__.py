"""Benchmarks: standalone programs and the harness comparing CPython and tracejit."""
