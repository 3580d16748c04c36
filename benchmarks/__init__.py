"""Benchmarks with targets: see docs/benchmarks.md."""
