"""examples/aiohttp_app.py: an aiohttp service streaming chat completions as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from .chat_service_tests import ChatServiceTests
from .example_scripts import load_example

pytestmark = pytest.mark.anyio

aiohttp_app = load_example("aiohttp_app")


@pytest.fixture
async def chat_url(llm) -> AsyncIterator[str]:
    """The app around the shared model, served in this test's event loop on a free port."""
    runner = web.AppRunner(aiohttp_app.create_app(llm))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site.port}/chat"
    await runner.cleanup()


class TestAiohttpApp(ChatServiceTests):
    example = "aiohttp_app"
