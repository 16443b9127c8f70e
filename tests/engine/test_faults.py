"""Faults that must end only the requests they concern: user callbacks that raise, and an
event loop closed while its streams were still running. The engine serves on, and no
sequence leaks (stats and the KV cache agree)."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from allama import Llama

from ..tiny_models import GREEDY

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=[True, False], ids=["overlap", "serial"])
def llm(llama_f32_path, request):
    model = Llama(str(llama_f32_path), n_ctx=256, n_parallel=4, n_keep=0, n_threads=2, overlap_outputs=request.param)
    yield model
    model.close()


def holding(llm: Llama) -> list[int]:
    ctx = llm._scheduler.ctx
    return [s for s in range(ctx.n_seq_max) if ctx.seq_pos_max(s) >= 0]


async def settle(llm: Llama) -> None:
    with anyio.fail_after(10):
        while llm.stats().active or llm.stats().queued:
            await anyio.sleep(0.01)


def boom_after(n: int, hook: str):
    """A logits processor (returns the scores) or stopping criterion (returns False) that
    raises on its call n + 1."""
    calls = []

    def callback(ids, scores_or_logits):
        calls.append(1)
        if len(calls) > n:
            raise RuntimeError("user callback failed")
        return scores_or_logits if hook == "logits_processor" else False

    return callback


@pytest.mark.parametrize("hook", ["logits_processor", "stopping_criteria"])
async def test_a_raising_callback_ends_only_its_request(llm, hook):
    expected = [(await llm.create_completion(f"Other {i}", max_tokens=12, **GREEDY))["choices"][0]["text"]
                for i in range(3)]
    results: dict[int, object] = {}

    async def other(i: int) -> None:
        results[i] = (await llm.create_completion(f"Other {i}", max_tokens=12, **GREEDY))["choices"][0]["text"]

    async def failing() -> None:
        with pytest.raises(RuntimeError, match="user callback failed"):
            await llm.create_completion("Failing", max_tokens=12, **GREEDY, **{hook: boom_after(3, hook)})
        results["failed"] = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(failing)
        for i in range(3):
            tg.start_soon(other, i)
    assert results.pop("failed") is True
    assert [results[i] for i in range(3)] == expected
    await settle(llm)
    assert holding(llm) == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_loop_closed_with_streams_pending_frees_their_sequences(llm):
    def abandon_in_another_loop() -> None:
        async def start_streams() -> None:
            for i in range(3):
                stream = await llm.create_completion(f"Abandoned {i}", max_tokens=200, ignore_eos=True, stream=True)
                await stream.__anext__()
        loop = asyncio.new_event_loop()
        loop.run_until_complete(start_streams())
        loop.close()  # the streams were never closed: their loop is gone

    await anyio.to_thread.run_sync(abandon_in_another_loop)
    out = await llm.create_completion("Still serving", max_tokens=4, **GREEDY)
    assert out["choices"][0]["finish_reason"] == "length"
    await settle(llm)
    assert holding(llm) == [] and llm.stats().active == 0
