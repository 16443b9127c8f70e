"""What every example chat service must do, as a test class each example's test module subclasses.

A subclass names its example (examples/<example>.py) and its module provides a
`chat_url` fixture: the example's app around the shared `llm`, served in-process,
which is the only way to watch the engine while a client walks away.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import httpx

from allama import Llama

from .example_scripts import running_example

MESSAGES = [{"role": "user", "content": "Tell me a story."}]


class ChatServiceTests:
    """The tests every example chat service passes; a subclass sets `example`."""

    example: str

    async def test_the_script_streams_four_concurrent_chats_and_exits_cleanly(self, llama_f32_path, tmp_path):
        async with running_example(self.example, llama_f32_path, tmp_path / "server.log") as base_url:
            with anyio.fail_after(30):
                async with httpx.AsyncClient(timeout=30) as client:
                    streams = await asyncio.gather(*(stream_chat(client, f"{base_url}/chat", max_tokens=12)
                                                     for _ in range(4)))
        assert len({chunks[0]["id"] for chunks in streams}) == 4

    async def test_a_client_that_disconnects_frees_its_sequence(self, chat_url: str, llm: Llama):
        # Greedy decoding of the tiny model runs all 1500 tokens (seconds), so a request
        # that ends sooner, counted as cancelled, was ended by the disconnect.
        cancelled_before = llm.stats().requests_cancelled
        body = {"messages": MESSAGES, "max_tokens": 1500, "temperature": 0}
        async with httpx.AsyncClient(timeout=30) as client:
            async with client.stream("POST", chat_url, json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        break  # leaving the block closes the connection mid-stream
        with anyio.fail_after(5):
            while (stats := llm.stats()).active or stats.requests_cancelled == cancelled_before:
                await anyio.sleep(0.02)

    async def test_a_bad_request_is_refused_before_streaming(self, chat_url: str):
        async with httpx.AsyncClient() as client:
            response = await client.post(chat_url, json={"messages": []})
        assert response.status_code == 400 and "messages" in response.json()["error"]


async def stream_chat(client: httpx.AsyncClient, url: str, max_tokens: int) -> list[dict[str, Any]]:
    """One chat completion streamed from a service, checked chunk by chunk."""
    async with client.stream("POST", url, json={"messages": MESSAGES, "max_tokens": max_tokens}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].partition(";")[0] == "text/event-stream"
        return checked_chat_chunks(server_sent_data((await response.aread()).decode()))


def server_sent_data(body: str) -> list[str]:
    """The data of each event of a Server-Sent Events body made of `data: ...` events."""
    *events, tail = body.split("\n\n")
    assert tail == "", f"unterminated event {tail!r}"
    assert all(event.startswith("data: ") for event in events), events
    return [event.removeprefix("data: ") for event in events]


def checked_chat_chunks(data: list[str]) -> list[dict[str, Any]]:
    """The chunks of one streamed chat completion, after checking its OpenAI shape and its `[DONE]`."""
    *chunks_json, done = data
    assert done == "[DONE]"
    chunks = [json.loads(text) for text in chunks_json]
    assert chunks and all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(isinstance(chunk["choices"][0]["delta"].get("content", ""), str) for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks[:-1])
    return chunks
