"""Benchmarks of a generated service: `python -m benchmarks --help` (see benchmarks/README.md)."""
