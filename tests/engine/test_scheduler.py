"""The engine under concurrency: equality with solo runs, real batching,
cancellation, prefix reuse and KV pressure. Runs under asyncio and trio."""

from __future__ import annotations

import random
import threading
from functools import partial

import anyio
import numpy as np
import pytest

from allama import Llama

from ..tiny_models import GREEDY

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=[True, False], ids=["overlap", "serial"])
def llm(llama_f32_path, request):
    """One model shared by tests on both backends (the loop is captured per request), with a
    step's outputs made on the output thread during the next decode, and after the decode."""
    model = Llama(str(llama_f32_path), n_ctx=1024, n_parallel=8, n_batch=256, n_threads=2, n_threads_batch=2,
                  overlap_outputs=request.param)
    yield model
    model.close()


async def complete(llm: Llama, prompt, max_tokens: int, **kw):
    out = await llm.create_completion(prompt, max_tokens=max_tokens, logprobs=0, **{**GREEDY, **kw})
    choice = out["choices"][0]
    return choice["logprobs"]["tokens"], choice["text"]


def margin_report(llm: Llama, prompt: str, solo: list[str], batched: list[str]) -> str:
    """Where two greedy runs diverge and how close the top two logits were there."""
    from allama import _native

    k = next(i for i, (a, b) in enumerate(zip(solo + [None], batched + [None])) if a != b)
    ctx = _native.Context(llm._model)
    tokens = llm.tokenize(prompt.encode(), special=True) + [
        llm._vocab.tokenize(t.encode(), False, False)[-1] for t in solo[:k]]
    batch = _native.Batch(len(tokens))
    batch.add_tokens(tokens, 0, 0, True)
    ctx.decode(batch)
    top = np.sort(ctx.logits(-1))[-2:]
    return f"diverged at generated token {k}: {solo[k:k+1]} vs {batched[k:k+1]}, logit margin {top[1] - top[0]:.6f}"


async def test_eight_concurrent_requests_match_each_alone(llm):
    prompts = [("Once upon a time " * (i + 1), 6 + 5 * i) for i in range(8)]
    alone = [await complete(llm, p, n) for p, n in prompts]
    together = [None] * 8

    async def run(i):
        together[i] = await complete(llm, *prompts[i])

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(run, i)
    for i, ((p, n), solo, batched) in enumerate(zip(prompts, alone, together)):
        assert len(solo[0]) == n
        assert batched == solo, margin_report(llm, p, solo[0], batched[0])


async def test_batching_is_real_and_streams_interleave(llm):
    before = llm.stats()
    arrivals: list[int] = []
    # Submitted back to back (a stream is submitted at the await), then read concurrently.
    streams = [await llm.create_completion(f"Stream {i}:", max_tokens=32, temperature=0, ignore_eos=True,
                                           stream=True) for i in range(8)]

    async def read(i):
        async for chunk in streams[i]:
            arrivals.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(read, i)
    after = llm.stats()
    generated = after.tokens_generated - before.tokens_generated
    calls = after.decode_calls - before.decode_calls
    assert generated == 8 * 32
    assert calls < generated / 4, (calls, generated)
    assert after.llama_tokens_evaluated - before.llama_tokens_evaluated >= generated
    first_done = min(max(k for k, r in enumerate(arrivals) if r == i) for i in range(8))
    assert len(set(arrivals[:first_done])) == 8  # every stream produced before any finished


async def test_max_tokens_none_runs_to_the_end_of_the_window(llama_f32_path):
    async with Llama(str(llama_f32_path), n_ctx=64, n_parallel=1) as small:
        out = await small.create_completion("Hi", max_tokens=None, temperature=0, ignore_eos=True)
        assert out["choices"][0]["finish_reason"] == "length"
        assert out["usage"]["total_tokens"] == 64


async def wait_idle(llm: Llama, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while llm.stats().active or llm.stats().queued:
            await anyio.sleep(0.01)


async def test_cancel_while_queued_prefilling_and_generating(llama_f32_path):
    async with Llama(str(llama_f32_path), n_ctx=2048, n_parallel=1, n_batch=16) as one:
        base = one.stats().requests_cancelled
        # generating: leave the stream after 3 chunks
        stream = await one.create_completion("Tell me", max_tokens=500, ignore_eos=True, stream=True)
        got = 0
        async for _ in stream:
            got += 1
            if got == 3:
                break
        await stream.aclose()
        await wait_idle(one)

        # prefilling: a long prompt in 16-token chunks, cancelled mid-way
        async with anyio.create_task_group() as tg:
            tg.start_soon(one.create_completion, list(range(100, 1900)))
            with anyio.fail_after(10):
                while one.stats().prompt_tokens_evaluated < 64:
                    await anyio.sleep(0.001)
            assert one.stats().active == 1
            tg.cancel_scope.cancel()
        await wait_idle(one)

        # queued: behind a long request
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: one.create_completion("first", max_tokens=300, ignore_eos=True))
            with anyio.fail_after(10):
                while one.stats().active == 0:
                    await anyio.sleep(0.001)
            with anyio.CancelScope() as scope:
                scope.cancel()  # cancelled at its first await: after submission, while queued
                await one.create_completion("second", max_tokens=5)
            tg.cancel_scope.cancel()
        await wait_idle(one)
        assert one.stats().requests_cancelled - base >= 3


async def test_random_cancellations_leak_no_sequence(llama_f32_path):
    async with Llama(str(llama_f32_path), n_ctx=256, n_parallel=4, n_keep=2, max_queue=400) as llm:
        rng = random.Random(7)

        async def one(i):
            with anyio.move_on_after(rng.random() * 0.2):
                if i % 2:
                    stream = await llm.create_completion(f"req {i}", max_tokens=rng.randint(1, 40), stream=True)
                    async with stream:
                        async for _ in stream:
                            pass
                else:
                    await llm.create_completion(f"req {i}", max_tokens=rng.randint(1, 40))

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
        await wait_idle(llm)
        stats = llm.stats()
        assert stats.active == 0 and stats.queued == 0
        ctx = llm._scheduler.ctx
        holding = {s for s in range(ctx.n_seq_max) if ctx.seq_pos_max(s) >= 0}
        # Only kept sequences hold KV. Each finished one is kept under its id until a request needs
        # the id, so up to n_parallel + n_keep are (more when more requests ran to the end).
        assert holding == set(llm._scheduler.prefix_cache.kept)
        assert stats.kept == len(holding) <= 4 + 2


async def test_prefix_reuse_evaluates_only_the_suffix(llama_f32_path):
    rng = np.random.default_rng(0)
    prefix = [1] + rng.integers(100, 30000, size=499).tolist()
    first = prefix + [500, 501, 502]
    second = prefix + [700, 701, 702, 703]
    async with Llama(str(llama_f32_path), n_ctx=1024, n_parallel=2) as warm:
        await warm.create_completion(first, max_tokens=4, temperature=0)
        before = warm.stats()
        reused = await warm.create_completion(second, max_tokens=12, temperature=0)
        after = warm.stats()
    assert after.prompt_tokens_evaluated - before.prompt_tokens_evaluated == len(second) - 500
    assert after.prompt_tokens_reused - before.prompt_tokens_reused == 500
    assert reused["usage"]["prompt_tokens_details"]["cached_tokens"] == 500
    async with Llama(str(llama_f32_path), n_ctx=1024, n_parallel=2, n_keep=0) as cold:
        expected = await cold.create_completion(second, max_tokens=12, temperature=0)
    assert reused["choices"][0]["text"] == expected["choices"][0]["text"]


async def test_concurrent_requests_share_a_long_prefix(llama_f32_path):
    rng = np.random.default_rng(1)
    prefix = [1] + rng.integers(100, 30000, size=299).tolist()
    prompts = [prefix + [800 + i, 900 + i] for i in range(2)]
    async with Llama(str(llama_f32_path), n_ctx=1024, n_parallel=2, n_batch=64) as llm:
        results = [None, None]

        async def run(i):
            results[i] = await llm.create_completion(prompts[i], max_tokens=8, temperature=0)

        async with anyio.create_task_group() as tg:
            for i in range(2):
                tg.start_soon(run, i)
        stats = llm.stats()
        assert stats.prompt_tokens_evaluated < 2 * 300
        assert stats.prompt_tokens_reused >= 290
    async with Llama(str(llama_f32_path), n_ctx=1024, n_parallel=2, n_keep=0) as cold:
        for i in range(2):
            alone = await cold.create_completion(prompts[i], max_tokens=8, temperature=0)
            assert results[i]["choices"][0]["text"] == alone["choices"][0]["text"]


async def test_kv_pressure_preempts_and_recomputes_without_changing_results(llama_f32_path):
    prompts = [[1] + list(range(1000 + 200 * i, 1100 + 200 * i)) for i in range(2)]
    async with Llama(str(llama_f32_path), n_ctx=256, n_parallel=2, n_keep=0, n_batch=32) as roomy:
        expected = [(await roomy.create_completion(p, max_tokens=100, temperature=0, ignore_eos=True))
                    ["choices"][0]["text"] for p in prompts]
    # 256 cells (llama.cpp's minimum) for two sequences that need 201 each
    async with Llama(str(llama_f32_path), n_ctx=256, n_parallel=2, n_keep=0, n_batch=32, kv_size=256) as tight:
        assert tight._scheduler.ctx.n_ctx == 256
        got = [None, None]

        async def run(i):
            out = await tight.create_completion(prompts[i], max_tokens=100, temperature=0, ignore_eos=True)
            got[i] = out["choices"][0]["text"]

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(2):
                    tg.start_soon(run, i)
        assert tight.stats().preemptions >= 1
    assert got == expected


def count_posts(monkeypatch) -> list[list[int]]:
    """Every post to an event loop from now on, as the number of outputs it hands each sink."""
    from allama.engine.loop_handle import LoopHandle

    posts: list[list[int]] = []
    original = LoopHandle.post

    def counting(self, callback, *args):
        posts.append([len(outs) for _, outs, _ in args[0]])
        original(self, callback, *args)

    monkeypatch.setattr(LoopHandle, "post", counting)
    return posts


async def test_streams_wake_their_loop_once_per_step_not_per_token(llm, monkeypatch):
    posts = count_posts(monkeypatch)
    before = llm.stats()

    async def read(i):
        stream = await llm.create_completion(f"wake {i}", max_tokens=16, ignore_eos=True, stream=True)
        async for _ in stream:
            pass

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(read, i)
    steps = llm.stats().decode_calls - before.decode_calls
    assert sum(map(sum, posts)) >= 4 * 16    # every output was delivered...
    assert len(posts) <= steps + 4           # ...in about one wake-up per step
    assert max(map(len, posts)) >= 4         # outputs of several requests share a wake-up


async def test_whole_results_wake_their_loop_once_per_request(llm, monkeypatch):
    posts = count_posts(monkeypatch)
    results = {}

    async def run(i):
        results[i] = await llm.create_completion(f"whole {i}", max_tokens=16, ignore_eos=True, temperature=0)

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(run, i)
    assert len(posts) <= 4 and sum(map(sum, posts)) == 4 * 16  # each with its last output
    for i, result in results.items():
        assert result["usage"]["completion_tokens"] == 16
        stream = await llm.create_completion(f"whole {i}", max_tokens=16, ignore_eos=True, temperature=0, stream=True)
        assert "".join([chunk["choices"][0]["text"] async for chunk in stream]) == result["choices"][0]["text"]


async def test_a_long_whole_result_is_posted_in_parts(llm, monkeypatch):
    # so that a closed event loop is noticed while the sequence runs, not only at its end
    monkeypatch.setattr("allama.engine.request_table.HELD_OUTPUTS", 5)
    posts = count_posts(monkeypatch)
    await llm.create_completion("parts", max_tokens=16, ignore_eos=True)
    assert posts == [[5], [5], [5], [1]]


async def test_higher_priority_is_admitted_first(llama_f32_path):
    async with Llama(str(llama_f32_path), n_ctx=4096, n_parallel=1) as one:
        # the order the decode thread serves them in: each request's first stopping-criteria call
        # (when the requests end, their tasks may wake in any order: trio shuffles a batch)
        served: list[str] = []
        # "busy" holds the one slot until both others are queued; its 4,000 tokens are a bound
        # it must not reach (480 ran out once on a slow free-threaded run, and "low" was
        # admitted alone before "high" came)
        both_queued = threading.Event()

        def serve(name, hold=False):
            def criteria(ids, logits):
                if not served or served[-1] != name:
                    served.append(name)
                return both_queued.is_set() if hold else False
            return criteria

        async def run(name, priority, n, hold=False):
            await one.create_completion(name, max_tokens=n, ignore_eos=True, priority=priority,
                                        stopping_criteria=serve(name, hold))

        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(run, "busy", 0, 4000, hold=True))
            with anyio.fail_after(10):
                while one.stats().active == 0:
                    await anyio.sleep(0.001)
            tg.start_soon(run, "low", 0, 2)
            with anyio.fail_after(10):
                while one.stats().queued < 1:
                    await anyio.sleep(0.001)
            tg.start_soon(run, "high", 5, 2)
            with anyio.fail_after(10):
                while one.stats().queued < 2:
                    await anyio.sleep(0.001)
            both_queued.set()
        assert served == ["busy", "high", "low"]


async def test_a_long_prompt_does_not_stall_running_streams(llama_f32_path):
    """Chunked prefill: while a 4,000-token prompt is evaluated, a running stream gets a
    token at every step, so it waits at most one chunk's decode between tokens."""
    # room in the KV cache for both whole windows: a running stream that is far along when the
    # long prompt comes (a starved event loop submits it late) is never preempted, nor ends
    async with Llama(str(llama_f32_path), n_ctx=4200, kv_size=8400, n_parallel=2, n_batch=256) as llm:
        async def running():
            stream = await llm.create_completion("running", max_tokens=4000, ignore_eos=True, stream=True)
            async for _ in stream:
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(running)
            # the engine's count, not the reader's: a slow event loop reads far behind
            with anyio.fail_after(30):
                while llm.stats().tokens_generated < 2:
                    await anyio.sleep(0.001)
            start = llm.stats()
            long = await llm.create_completion(list(range(100, 4100)), max_tokens=1, stream=True)
            async for _ in long:
                break
            end = llm.stats()
            tg.cancel_scope.cancel()
        steps = end.decode_calls - start.decode_calls
        assert steps >= 4000 // 256  # the prompt was split into chunks
        # tokens counted as the decode thread samples them (a slow event loop reads the stream's
        # late, and the ones it had not read when the task group was cancelled would not count)
        running_tokens = end.tokens_generated - start.tokens_generated - 1  # the long prompt's one token
        assert running_tokens >= steps - 2  # one token per step while the prompt was evaluated


async def test_default_kv_cache_holds_n_ctx_cells_shared_by_all_sequences(llama_f32_path):
    # llama-cpp-python's memory for the same arguments: n_ctx cells, not n_ctx per sequence
    async with Llama(str(llama_f32_path), n_ctx=512, n_parallel=8, n_threads=1) as llm:
        assert llm._scheduler.ctx.n_ctx == 512 and llm._scheduler.ctx.n_ctx_seq == 512
        outs = await _gather(llm, [[1] + list(range(300 + 20 * i, 320 + 20 * i)) for i in range(8)], 16)
        assert all(len(o["choices"][0]["logprobs"]["tokens"]) == 16 for o in outs)


async def _gather(llm: Llama, prompts, max_tokens: int) -> list:
    results: list = [None] * len(prompts)

    async def run(i):
        results[i] = await llm.create_completion(prompts[i], max_tokens=max_tokens, temperature=0,
                                                 ignore_eos=True, logprobs=0)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for i in range(len(prompts)):
                tg.start_soon(run, i)
    return results


async def _alone_then_together_on_256_cells(llama_f32_path, prompts, max_tokens: int):
    """Each prompt alone, then all at once, on one 256-cell cache: the stats of the latter."""
    async with Llama(str(llama_f32_path), n_ctx=256, n_parallel=len(prompts), n_keep=0, n_batch=64,
                     n_threads=1) as llm:
        alone = [(await llm.create_completion(p, max_tokens=max_tokens, temperature=0, ignore_eos=True))
                 ["choices"][0]["text"] for p in prompts]
        before = llm.stats().preemptions
        outs = await _gather(llm, prompts, max_tokens)
        assert [o["choices"][0]["text"] for o in outs] == alone
        stats = llm.stats()
        assert stats.active == 0 and stats.queued == 0
        return stats.preemptions - before


async def test_requests_whose_prompts_fill_the_cache_wait_instead_of_thrashing(llama_f32_path):
    prompts = [[1] + list(range(500 + 200 * i, 700 + 200 * i)) for i in range(3)]  # 201 tokens each
    # each prompt alone nearly fills the 256 cells: admission holds the others back
    assert await _alone_then_together_on_256_cells(llama_f32_path, prompts, 20) == 0


async def test_growing_sequences_are_parked_and_recomputed_with_unchanged_output(llama_f32_path):
    prompts = [[1] + list(range(900 + 50 * i, 940 + 50 * i)) for i in range(4)]  # 41 tokens each
    # 4 x 191 cells wanted, 256 held: growing sequences are parked and recomputed later
    assert await _alone_then_together_on_256_cells(llama_f32_path, prompts, 150) >= 1


async def test_a_request_larger_than_an_explicit_kv_size_fails_cleanly_and_others_go_on(llama_f32_path):
    from allama.errors import KVCacheFullError

    async with Llama(str(llama_f32_path), n_ctx=512, kv_size=256, n_parallel=2, n_keep=0, n_threads=1) as llm:
        with pytest.raises(KVCacheFullError, match="kv_size"):
            await llm.create_completion([1] + list(range(100, 400)), max_tokens=4, temperature=0)
        out = await llm.create_completion([1, 2, 3], max_tokens=4, temperature=0, ignore_eos=True)
        assert out["usage"]["completion_tokens"] == 4


async def test_every_choice_of_a_request_gets_its_logprobs_and_prompt_logprobs(llm):
    """The choices after the first copy the first one's prompt KV; their own tokens are still
    scored, and with echo they show the prompt's scores too."""
    out = await llm.create_completion("Once upon a time", max_tokens=5, n=3, logprobs=2, temperature=0.9, seed=4)
    for choice in out["choices"]:
        lp = choice["logprobs"]
        assert len(lp["tokens"]) == len(lp["token_logprobs"]) == 5
        assert all(v <= 0 for v in lp["token_logprobs"]) and all(len(t) >= 1 for t in lp["top_logprobs"])
    echoed = await llm.create_completion("Once upon a time", max_tokens=2, n=2, logprobs=1, echo=True, **GREEDY)
    prompt_scores = [c["logprobs"]["token_logprobs"][:4] for c in echoed["choices"]]
    assert prompt_scores[0] == prompt_scores[1] and all(v is not None for v in prompt_scores[0][1:])
