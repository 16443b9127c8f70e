"""examples/quart_app.py: a Quart service streaming chat completions as Server-Sent Events."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import hypercorn
import hypercorn.asyncio
import pytest

from .chat_service_tests import ChatServiceTests
from .example_scripts import load_example

pytestmark = pytest.mark.anyio

quart_app = load_example("quart_app")


@pytest.fixture
async def chat_url(llm) -> AsyncIterator[str]:
    """The app around the shared model, served by Hypercorn in this test's event loop on a free port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = hypercorn.Config()
    config.bind = [f"fd://{listener.detach()}"]  # Hypercorn owns the socket from here
    stop = asyncio.Event()
    app = quart_app.create_app(llm)
    server = asyncio.create_task(hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait))
    yield f"http://127.0.0.1:{port}/chat"
    stop.set()
    await server


class TestQuartApp(ChatServiceTests):
    example = "quart_app"
