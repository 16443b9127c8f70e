"""Fixtures of the example-service tests: asyncio only, one model shared by a module's tests."""

from __future__ import annotations

import pytest

from allama import Llama

# The shared checks live outside test_*.py files: have pytest explain their failed asserts too.
pytest.register_assert_rewrite("tests.examples.chat_service_tests", "tests.examples.example_scripts")


@pytest.fixture
def anyio_backend():
    """aiohttp and Quart run on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="module")
def llm(llama_f32_path):
    """The tiny model, with room for a long generation that a client can walk away from."""
    model = Llama(str(llama_f32_path), n_ctx=2048, n_parallel=4, n_threads=2, n_threads_batch=2)
    yield model
    model.close()
