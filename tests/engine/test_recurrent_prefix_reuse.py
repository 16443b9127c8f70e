"""Prefix reuse on recurrent memory: Mamba (a state per sequence only) and LFM2 (a hybrid: a
state for its convolution layers, a KV cache for its attention layer).

A recurrent state is the sequence's state after its last token: llama.cpp cannot cut it back
to a shorter prefix (a partial seq_rm fails) and seq_cp copies it whole. So the engine reuses a
kept, running or following sequence only when the new prompt extends all of it, and evaluates
the prompt afresh otherwise; each result equals a plain one-sequence native decode."""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from allama import Llama, LlamaDraftModel

from ..greedy import engine_greedy, reference_decode

pytestmark = pytest.mark.anyio

N = 8


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(params=["mamba", "lfm2"])
def recurrent_path(request, architecture_model):
    return architecture_model(request.param)


def load(path, **kw) -> Llama:
    return Llama(str(path), **{"n_ctx": 256, "n_parallel": 4, "n_keep": 2, "n_batch": 32, "n_threads": 1,
                               "n_threads_batch": 1, **kw})


def tokens(rng: np.random.Generator, n: int) -> list[int]:
    return rng.integers(300, 30000, size=n).tolist()


async def reused_by(llm: Llama, prompt: list[int]) -> tuple[list[int], int]:
    """The request's greedy tokens (checked against a plain decode) and the prompt tokens it reused."""
    before = llm.stats().prompt_tokens_reused
    got = await engine_greedy(llm, prompt, N)
    assert got == reference_decode(llm._model, prompt, N)[0]
    return got, llm.stats().prompt_tokens_reused - before


async def test_a_kept_state_is_reused_whole_or_not_at_all(recurrent_path):
    rng = np.random.default_rng(11)
    first = [1] + tokens(rng, 40)
    async with load(recurrent_path) as llm:
        assert llm._model.is_recurrent or llm._model.is_hybrid
        generated, reused = await reused_by(llm, first)
        assert reused == 0
        # the next turn of a conversation: extends the kept sequence (prompt + all but the last
        # generated token, which was never evaluated), so it starts from the kept state
        turn = first + generated + tokens(rng, 5)
        turn_generated, reused = await reused_by(llm, turn)
        assert reused == len(first) + N - 1
        # a strict prefix of a kept sequence, one diverging midway, and a prompt equal to a kept
        # one (at least its last token must be evaluated): no state holds them, all evaluated afresh
        for prompt in (first[:20], first[:25] + tokens(rng, 10), first):
            _, reused = await reused_by(llm, prompt)
            assert reused == 0
        # the kept states are intact after all that
        _, reused = await reused_by(llm, turn + turn_generated + tokens(rng, 3))
        assert reused == len(turn) + N - 1


async def test_concurrent_requests_sharing_a_prefix(recurrent_path):
    rng = np.random.default_rng(12)
    prefix = [1] + tokens(rng, 60)
    # one request is the prefix itself: the others may copy its state once it has evaluated all of it
    prompts = [prefix] + [prefix + tokens(rng, 1 + i) for i in range(3)]
    async with load(recurrent_path, n_batch=16) as llm:
        results: list[list[int] | None] = [None] * len(prompts)

        async def run(i: int) -> None:
            results[i] = await engine_greedy(llm, prompts[i], N)

        async with anyio.create_task_group() as tg:
            for i in range(len(prompts)):
                tg.start_soon(run, i)
        for prompt, got in zip(prompts, results):
            assert got == reference_decode(llm._model, prompt, N)[0]
        # states were shared (a copied state that held more or less than its prefix would have
        # changed the greedy outputs above); which ones depends on the steps at which the requests
        # were admitted: the leader's after its whole prompt, or after a step where it stood
        assert llm.stats().prompt_tokens_reused >= len(prefix) - 1


async def test_n_choices_share_the_prompt_state(recurrent_path):
    rng = np.random.default_rng(13)
    prompt = [1] + tokens(rng, 30)
    async with load(recurrent_path) as llm:
        expected = (await llm.create_completion(prompt, max_tokens=N, temperature=0, ignore_eos=True))["choices"][0]
        out = await llm.create_completion(prompt, n=3, max_tokens=N, temperature=0, ignore_eos=True)
        assert [c["text"] for c in out["choices"]] == [expected["text"]] * 3


class ProposeRepeats(LlamaDraftModel):
    """Proposes the last token three times more: mostly refused, so KV of refused drafts must go."""

    def __call__(self, input_ids: np.ndarray, /, **kwargs) -> np.ndarray:
        return np.full(3, input_ids[-1], dtype=np.intc)


async def test_speculative_decoding_is_off(recurrent_path):
    """Refused draft tokens cannot be dropped from a recurrent state: a draft model is ignored."""
    rng = np.random.default_rng(14)
    prompt = [1] + tokens(rng, 20)
    async with load(recurrent_path, draft_model=ProposeRepeats()) as llm:
        await reused_by(llm, prompt)
        assert llm.stats().draft_tokens == 0
