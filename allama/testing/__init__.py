"""Helpers for tests, demos and benchmarks: tiny GGUF models with seeded random weights."""
