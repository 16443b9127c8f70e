"""The corpus's models as path strings (the fixtures of tests/conftest.py), for the children."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def chat_model(llama_f32_path) -> str:
    return str(llama_f32_path)


@pytest.fixture(scope="session")
def embed_model(bert_path) -> str:
    return str(bert_path)
