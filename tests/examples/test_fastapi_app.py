"""examples/fastapi_app.py: an OpenAI-style chat endpoint in a FastAPI app, run under uvicorn."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
import uvicorn

from .chat_service_tests import MESSAGES, checked_chat_chunks, server_sent_data
from .example_scripts import EXAMPLES_DIR, load_example

pytestmark = pytest.mark.anyio

fastapi_app = load_example("fastapi_app")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def base_url(llm) -> AsyncIterator[str]:
    """The app around the shared model, served by uvicorn in this test's event loop."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fastapi_app.create_app(llm=llm), host="127.0.0.1", port=port,
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    with anyio.fail_after(30):
        while not server.started:
            assert not task.done(), task
            await anyio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_uvicorn_serves_it_streamed_and_whole_and_sigint_stops_it_promptly(llama_f32_path, tmp_path):
    # As the docstring says to run it: ALLAMA_MODEL=... uvicorn fastapi_app:app --app-dir examples
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(EXAMPLES_DIR),
               "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "ALLAMA_MODEL": str(llama_f32_path), "ALLAMA_N_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as output:
        process = await anyio.open_process(command, stdout=output, stderr=output, env=env)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        with anyio.fail_after(60):
            while b"Application startup complete" not in log.read_bytes():
                assert process.returncode is None, log.read_text(errors="replace")
                await anyio.sleep(0.05)
        async with httpx.AsyncClient(timeout=30) as client:
            streamed = await asyncio.gather(*(stream_chat(client, url, max_tokens=12) for _ in range(4)))
            whole = await client.post(url, json={"messages": MESSAGES, "max_tokens": 8})
        assert len({chunks[0]["id"] for chunks in streamed}) == 4
        assert whole.status_code == 200 and whole.json()["object"] == "chat.completion"
        assert whole.json()["choices"][0]["message"]["role"] == "assistant"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        started = time.monotonic()
        with anyio.move_on_after(30):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, log.read_text(errors="replace")
    assert time.monotonic() - started < 10, "uvicorn took over 10 s to stop on SIGINT"
    assert b"Finished server process" in log.read_bytes()


async def test_a_client_that_disconnects_frees_its_sequence(base_url: str, llm):
    # Greedy decoding of the tiny model runs all 1500 tokens (seconds), so a request that
    # ends sooner, counted as cancelled, was ended by the disconnect.
    cancelled_before = llm.stats().requests_cancelled
    body = {"messages": MESSAGES, "max_tokens": 1500, "temperature": 0, "stream": True}
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("POST", f"{base_url}/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    break  # leaving the block closes the connection mid-stream
    with anyio.fail_after(5):
        while (stats := llm.stats()).active or stats.requests_cancelled == cancelled_before:
            await anyio.sleep(0.02)


@pytest.mark.parametrize("body", [{"messages": []}, {"messages": MESSAGES, "max_tokens": 0}, {}])
async def test_a_bad_request_gets_400_in_openai_shape(base_url: str, body):
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{base_url}/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_a_prompt_over_the_context_is_a_400(base_url: str):
    body = {"messages": [{"role": "user", "content": "word " * 5000}], "max_tokens": 4}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{base_url}/v1/chat/completions", json=body)
    assert response.status_code == 400 and "context" in response.json()["error"]["message"].lower()


async def stream_chat(client: httpx.AsyncClient, url: str, max_tokens: int) -> list[dict]:
    body = {"messages": MESSAGES, "max_tokens": max_tokens, "stream": True}
    async with client.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].partition(";")[0] == "text/event-stream"
        return checked_chat_chunks(server_sent_data((await response.aread()).decode()))
