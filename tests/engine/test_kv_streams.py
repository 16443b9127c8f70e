"""A KV stream per sequence (kv_unified=False): the same outputs as the unified cache, with
prefix reuse (kept sequences, followers, sessions, n > 1) through whole-stream copies."""

from __future__ import annotations

import anyio
import pytest

from allama import Llama, _native
from allama.errors import AllamaError
from allama.server.settings import ModelSettings

from ..native.isolated import run_isolated
from ..tiny_models import GREEDY

pytestmark = pytest.mark.anyio

SHARED = "In a quiet village by the sea there lived an old clockmaker who repaired every clock in town, and "


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module", params=[True, False], ids=["unified", "split"])
def llm(request, llama_f32_path):
    model = Llama(str(llama_f32_path), n_ctx=512, n_parallel=6, n_keep=3, n_batch=64, n_threads=2,
                  n_threads_batch=2, kv_unified=request.param)
    yield model
    model.close()


@pytest.fixture(scope="module")
def unified(llama_f32_path):
    model = Llama(str(llama_f32_path), n_ctx=512, n_parallel=6, n_keep=3, n_batch=64, n_threads=2, n_threads_batch=2)
    yield model
    model.close()


async def texts(llm: Llama, prompts: list[str], max_tokens: int = 12, **kw) -> list[str]:
    out: list[str] = [""] * len(prompts)

    async def one(i: int) -> None:
        result = await llm.create_completion(prompts[i], max_tokens=max_tokens, **{**GREEDY, **kw})
        out[i] = result["choices"][0]["text"]

    async with anyio.create_task_group() as tg:
        for i in range(len(prompts)):
            tg.start_soon(one, i)
    return out


def test_the_layout_is_the_one_asked_for(llm):
    ctx = llm._scheduler.ctx
    if ctx.kv_unified:
        assert ctx.n_ctx_seq == ctx.n_ctx
    else:
        assert ctx.n_ctx_seq >= 512 and ctx.n_ctx == ctx.n_ctx_seq * (6 + 3)  # a window per sequence id


async def test_concurrent_requests_give_what_the_unified_cache_gives(llm, unified):
    prompts = [f"Story {i}: once upon a time " * (1 + i % 3) for i in range(6)]
    assert await texts(llm, prompts) == await texts(unified, prompts)


async def test_requests_sharing_a_prefix_reuse_it_and_answer_alike(llm, unified):
    prompts = [SHARED + ending for ending in ("the sea", "the clocks", "his cat", "the storm")]
    before = llm.stats().prompt_tokens_reused
    got = await texts(llm, prompts)  # followers wait for the first one's prefill and copy it
    again = await texts(llm, [SHARED + "the harbour"])  # a kept sequence is taken over
    assert llm.stats().prompt_tokens_reused - before >= 2 * len(llm.tokenize(SHARED.encode())) // 2
    assert got == await texts(unified, prompts)
    assert again == await texts(unified, [SHARED + "the harbour"])


async def test_several_choices_of_one_prompt_share_its_prefill(llm, unified):
    kw = {"n": 3, "temperature": 0.9, "seed": 5}
    got = await llm.create_completion(SHARED, max_tokens=10, **kw)
    want = await unified.create_completion(SHARED, max_tokens=10, **kw)
    assert [c["text"] for c in got["choices"]] == [c["text"] for c in want["choices"]]


async def test_a_request_copies_an_idle_sessions_prefix(llm, unified):
    async def run(model: Llama) -> tuple[str, str, int]:
        async with model.session() as session:
            first = await session.create_completion(SHARED, max_tokens=8, **GREEDY)
            history = session.tokens
            other = await model.create_completion(history + model.tokenize(b" then", add_bos=False),
                                                  max_tokens=8, **GREEDY)
            second = await session.create_completion(history + model.tokenize(b" and", add_bos=False),
                                                     max_tokens=8, **GREEDY)
        return (first["choices"][0]["text"] + "|" + second["choices"][0]["text"], other["choices"][0]["text"],
                other["usage"]["prompt_tokens_details"]["cached_tokens"])

    got, want = await run(llm), await run(unified)
    assert got[:2] == want[:2]
    assert got[2] > 0  # the session's KV was copied, not recomputed


def test_kv_size_is_refused_with_a_stream_per_sequence(llama_f32_path):
    with pytest.raises(ValueError, match="kv_unified=False"):
        Llama(str(llama_f32_path), n_ctx=256, kv_size=512, kv_unified=False)


@pytest.mark.parametrize(("kv_unified", "n_parallel", "kept"), [(True, 8, 8), (False, 8, 2), (False, 2, 1)])
async def test_kept_sequences_default_to_a_quarter_of_the_streams_when_each_costs_a_window(
        llama_f32_path, kv_unified, n_parallel, kept):
    model = Llama(str(llama_f32_path), n_ctx=64, n_parallel=n_parallel, n_threads=1, kv_unified=kv_unified)
    try:
        ctx = model._scheduler.ctx
        assert ctx.n_ctx == ctx.n_ctx_seq * (1 if kv_unified else n_parallel + kept)
        sessions = [model.session() for _ in range(kept)]
        for session in sessions:  # sessions take the kept ids: exactly `kept` of them open
            await session.create_completion("Hi", max_tokens=1, **GREEDY)
        with pytest.raises(AllamaError, match=f"at most {kept} sessions"):
            await model.session().create_completion("Hi", max_tokens=1)
        for session in sessions:
            await session.aclose()
    finally:
        model.close()


def test_the_server_setting_reaches_the_model():
    assert ModelSettings(model="m.gguf", kv_unified=False).llama_kwargs()["kv_unified"] is False


def test_a_partial_copy_across_streams_is_a_value_error_not_an_abort(llama_f32_path):
    # llama.cpp aborts the process on it (GGML_ASSERT): the binding refuses first
    outcome = run_isolated(f"""
        from allama import _native
        model = _native.Model.load({str(llama_f32_path)!r}, _native.ModelParams())
        params = _native.ContextParams()
        params.n_ctx, params.n_seq_max, params.kv_unified = 512, 2, False
        ctx = _native.Context(model, params)
        batch = _native.Batch(8)
        batch.add_tokens([1, 2, 3, 4, 5, 6, 7, 8], 0, 0, True)
        ctx.decode(batch)
        ctx.seq_cp(0, 1, -1, -1)  # a whole stream: allowed
        ctx.seq_rm(1, 4, -1)
        assert ctx.seq_pos_max(1) == 3
        ctx.seq_cp(0, 1, 0, 4)
    """)
    assert outcome.type_name == "ValueError" and "whole" in outcome.message


def test_a_whole_stream_copy_cut_back_continues_like_the_original(llama_f32_path):
    model = _native.Model.load(str(llama_f32_path), _native.ModelParams())
    params = _native.ContextParams()
    params.n_ctx, params.n_seq_max, params.kv_unified = 512, 2, False
    params.type_k = params.type_v = 0
    params.flash_attn_type = 0
    ctx = _native.Context(model, params)
    tokens = [1, 450, 4996, 17354, 1701, 29916, 432, 17204]
    batch = _native.Batch(8)
    batch.add_tokens(tokens, 0, 0, False)
    ctx.decode(batch)
    ctx.seq_cp(0, 1, -1, -1)
    ctx.seq_rm(1, 5, -1)  # sequence 1 keeps the first 5 positions
    step = _native.Batch(2)
    step.add(tokens[5], 5, 1, True)
    ctx.decode(step)
    copied = ctx.logits(0).copy()
    ctx.seq_rm(0, 5, -1)
    step = _native.Batch(2)
    step.add(tokens[5], 5, 0, True)
    ctx.decode(step)
    assert (ctx.logits(0) == copied).all()
