"""The tiny random-weight llama the session fixtures build (tests/conftest.py), and the
sampling options that make its completions deterministic."""

from __future__ import annotations

from allama.testing.model_builder import LlamaConfig

TINY_LLAMA = LlamaConfig()

GREEDY = {"temperature": 0.0}
"""Sampling options for greedy decoding: the same prompt always continues the same way."""
