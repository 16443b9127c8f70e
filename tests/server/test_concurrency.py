"""Concurrent streams are batched (they progress together), and a client that goes away
frees its sequence at once."""

from __future__ import annotations

import json
import time

import anyio
import httpx
import pytest

from .model_aliases import CHAT

pytestmark = pytest.mark.anyio


async def _stream_chat(client: httpx.AsyncClient, base_url: str, i: int, tokens: int) -> dict:
    body = {"model": CHAT, "messages": [{"role": "user", "content": f"Story {i}"}], "max_tokens": tokens,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    arrivals, chunks = [], []
    async with client.stream("POST", base_url + "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
                arrivals.append(time.monotonic())
            elif line == "data: [DONE]":
                chunks.append("DONE")
    return {"chunks": chunks, "first": arrivals[0], "last": arrivals[-1]}


async def test_eight_streams_progress_together(base_url, chat_model):
    tokens = 48
    async with httpx.AsyncClient(timeout=120) as client:
        results: list[dict] = [{}] * 8

        async def run(i: int) -> None:
            results[i] = await _stream_chat(client, base_url, i, tokens)

        before = chat_model.stats().mean_batch_size
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(run, i)
    for result in results:
        chunks = result["chunks"]
        assert chunks[-1] == "DONE"
        usage = chunks[-2]["usage"]
        assert usage["completion_tokens"] == tokens
        assert chunks[-3]["choices"][0]["finish_reason"] == "length"
    # interleaved: every stream had started before any had finished
    assert max(r["first"] for r in results) < min(r["last"] for r in results)
    assert chat_model.stats().mean_batch_size >= before  # batched decode steps (more than one sequence)


async def test_a_client_that_disconnects_frees_its_sequence(base_url, chat_model):
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Go on"}], "max_tokens": 3000,
            "ignore_eos": True, "stream": True}
    async with httpx.AsyncClient(timeout=60) as client:
        async with client.stream("POST", base_url + "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            await lines.__anext__()
            assert chat_model.stats().active == 1
        # leaving the block closes the connection mid-stream
    cancelled = chat_model.stats().requests_cancelled
    for _ in range(100):
        if chat_model.stats().active == 0:
            break
        await anyio.sleep(0.02)
    assert chat_model.stats().active == 0
    assert chat_model.stats().requests_cancelled >= cancelled
    assert chat_model.stats().tokens_generated < 3000
