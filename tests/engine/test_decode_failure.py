"""A decode that llama.cpp fails (a backend error, not a full cache) ends only the request
whose sequence fails; the engine keeps serving the others with unchanged results and leaks
no sequence. The failure comes from the native test hook Context.inject_decode_failures."""

from __future__ import annotations

import anyio
import pytest

from allama import Llama
from allama.errors import DecodeError

from ..tiny_models import GREEDY

pytestmark = pytest.mark.anyio

PROMPTS = [f"Story {i}: once upon a time" + " there" * i for i in range(4)]


@pytest.fixture(scope="module")
def llm(llama_f32_path):
    model = Llama(str(llama_f32_path), n_ctx=256, n_parallel=4, n_keep=0, n_threads=2)
    yield model
    model.close()


async def texts(llm: Llama, prompts: list[str], max_tokens: int = 12) -> list[str | BaseException]:
    out: list[str | BaseException] = [""] * len(prompts)

    async def one(i: int) -> None:
        try:
            result = await llm.create_completion(prompts[i], max_tokens=max_tokens, **GREEDY)
            out[i] = result["choices"][0]["text"]
        except DecodeError as exc:
            out[i] = exc

    # All in one batch, as the tests assume: admission is held until every request is queued
    # (else, on a busy machine, the first could be decoded alone before the others arrive).
    scheduler = llm._scheduler
    scheduler.requests.admission_paused = True
    try:
        async with anyio.create_task_group() as tg:
            for i in range(len(prompts)):
                tg.start_soon(one, i)
            with anyio.fail_after(30):
                while llm.stats().queued < len(prompts):
                    await anyio.sleep(0.002)
            await scheduler.call(lambda: setattr(scheduler.requests, "admission_paused", False))
    finally:
        scheduler.requests.admission_paused = False
    return out


def holding(llm: Llama) -> list[int]:
    ctx = llm._scheduler.ctx
    return [s for s in range(ctx.n_seq_max) if ctx.seq_pos_max(s) >= 0]


async def test_a_failed_batch_is_retried_one_sequence_at_a_time(llm):
    expected = await texts(llm, PROMPTS)
    llm._scheduler.ctx.inject_decode_failures(-1, 1)  # the next batch fails, whoever is in it
    assert await texts(llm, PROMPTS) == expected
    assert llm.stats().active == 0 and holding(llm) == []


async def test_only_the_request_whose_decode_keeps_failing_ends(llm):
    expected = await texts(llm, PROMPTS)
    llm._scheduler.ctx.inject_decode_failures(0, 1000)  # every batch holding sequence 0 fails
    try:
        got = await texts(llm, PROMPTS)
    finally:
        llm._scheduler.ctx.inject_decode_failures(-1, 0)
    failed = [i for i, g in enumerate(got) if isinstance(g, BaseException)]
    assert len(failed) == 1, got
    assert "llama_decode failed" in str(got[failed[0]])
    assert [g for i, g in enumerate(got) if i not in failed] == [e for i, e in enumerate(expected) if i not in failed]
    assert llm.stats().active == 0 and holding(llm) == []
    assert await texts(llm, PROMPTS) == expected  # the engine serves on, sequence 0 included


async def test_a_request_alone_fails_with_a_clear_error_and_the_next_one_runs(llm):
    expected = await texts(llm, PROMPTS[:1])
    llm._scheduler.ctx.inject_decode_failures(-1, 1)
    with pytest.raises(DecodeError, match="llama_decode failed with status -3"):
        await llm.create_completion(PROMPTS[0], max_tokens=12, **GREEDY)
    assert await texts(llm, PROMPTS[:1]) == expected
    assert holding(llm) == []


async def test_a_failure_mid_generation_resumes_from_the_kv_before_the_step(llm):
    expected = await texts(llm, PROMPTS, max_tokens=24)

    async def fail_later() -> None:
        await anyio.sleep(0.02)  # while the requests are generating
        llm._scheduler.ctx.inject_decode_failures(-1, 1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(fail_later)
        got = await texts(llm, PROMPTS, max_tokens=24)
    assert got == expected
