"""allama under uvloop, the event loop that uvicorn[standard] and fastapi[standard] install and
run: completions, streams, chat, embeddings, cancellation and abandoned streams behave as under
asyncio's own loop. (Process life under uvloop, exit without close() and Ctrl-C, is in
test_process_lifecycle.py.)"""

from __future__ import annotations

import asyncio
import gc

import anyio
import numpy as np
import pytest
import uvloop

from allama import Llama

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio", {"use_uvloop": True}


@pytest.fixture(scope="module")
def llm(llama_f32_path):
    model = Llama(str(llama_f32_path), n_ctx=512, n_parallel=8, chat_format="chatml")
    yield model
    model.close()


async def test_the_tests_run_on_uvloop():
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)


async def test_streamed_chunks_concatenate_to_the_awaited_text(llm):
    whole = await llm.create_completion("Hello", max_tokens=24, temperature=0, ignore_eos=True)
    stream = await llm.create_completion("Hello", max_tokens=24, temperature=0, ignore_eos=True, stream=True,
                                         stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[-1]["usage"]["completion_tokens"] == 24
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == whole["choices"][0]["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


async def test_concurrent_streams_each_get_what_they_get_alone(llm):
    prompts = [f"prompt number {i}" for i in range(8)]
    alone = [(await llm.create_completion(p, max_tokens=16, temperature=0, ignore_eos=True))["choices"][0]["text"]
             for p in prompts]
    together: list[str] = [""] * len(prompts)

    async def read(i: int) -> None:
        stream = await llm.create_completion(prompts[i], max_tokens=16, temperature=0, ignore_eos=True, stream=True)
        together[i] = "".join([c["choices"][0]["text"] async for c in stream])

    async with anyio.create_task_group() as tg:
        for i in range(len(prompts)):
            tg.start_soon(read, i)
    assert together == alone


async def test_chat_stream_deltas_concatenate_to_the_message(llm):
    messages = [{"role": "user", "content": "hi"}]
    whole = await llm.create_chat_completion(messages, max_tokens=12, temperature=0)
    stream = await llm.create_chat_completion(messages, max_tokens=12, temperature=0, stream=True)
    chunks = [c async for c in stream]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]


async def test_a_cancelled_reader_frees_its_request(llm):
    async def read_forever() -> None:
        stream = await llm.create_completion("go on", max_tokens=400, ignore_eos=True, stream=True)
        async for _chunk in stream:
            pass

    with anyio.move_on_after(0.3):
        await read_forever()
    with anyio.fail_after(10):
        while llm.stats().active:
            await anyio.sleep(0.01)
    assert llm.stats().active == 0


async def test_a_stream_left_half_read_frees_its_request(llm):
    before = llm.stats().tokens_generated
    stream = await llm.create_completion("never finished", max_tokens=400, ignore_eos=True, stream=True)
    async for _chunk in stream:
        break
    del stream
    gc.collect()
    with anyio.fail_after(10):
        while llm.stats().active:
            await anyio.sleep(0.01)
    assert llm.stats().tokens_generated - before < 400


async def test_embeddings(llama_f32_path):
    async with Llama(str(llama_f32_path), n_ctx=256, embedding=True) as model:
        one, two = await model.embed(["a b c", "d e f"])
        assert np.isfinite(one).all() and np.isfinite(two).all() and one != two
