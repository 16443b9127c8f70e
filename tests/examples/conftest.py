"""Fixtures of the example-service tests: asyncio only, one model shared by a module's tests."""

from __future__ import annotations

import pytest


# The shared checks live outside test_*.py files: have pytest explain their failed asserts too.
pytest.register_assert_rewrite("tests.examples.chat_service_tests", "tests.examples.example_scripts")


@pytest.fixture
def anyio_backend():
    """aiohttp and Quart run on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="module")
def llm_options():
    """The tiny model, with room for a long generation that a client can walk away from."""
    return dict(n_ctx=2048, n_parallel=4, n_threads=2, n_threads_batch=2)
