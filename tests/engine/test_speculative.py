"""Speculative decoding inside the batched engine: proposals decoded beside other sequences,
kept only where the model's own sampling confirms them, so the output is exactly what
one-token-at-a-time decoding gives, greedy or sampled."""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from allama import Llama, LlamaDraftModel, LlamaPromptLookupDecoding, LlamaRAMCache

pytestmark = pytest.mark.anyio

PASSAGE = "the cat sat on the mat and the dog sat on the log, "
PROMPTS = [PASSAGE * 4 + "the cat", "def f(x):\n    return x\n" * 3 + "def f(", "one two three " * 5]
EXACT = dict(n_ctx=256, n_parallel=4, n_batch=128, type_k=0, type_v=0, flash_attn=False)


def test_prompt_lookup_proposes_what_followed_the_latest_ngram():
    find = LlamaPromptLookupDecoding.find_candidate_pred_tokens
    ids = np.array([1, 2, 3, 9, 1, 2, 4, 5, 6, 1, 2], dtype=np.intc)
    assert find(ids, 2, 3).tolist() == [4, 5, 6]          # after the most recent earlier "1 2"
    assert find(ids, 2, 10).tolist() == [4, 5, 6, 1, 2]   # up to the end
    assert find(np.array([5, 6, 7, 8], np.intc), 2, 4).tolist() == []
    assert find(np.array([7, 1, 5, 1], np.intc), 3, 2).tolist() == [5, 1]  # falls back to shorter n-grams
    assert find(np.array([3], np.intc), 2, 2).tolist() == []
    with pytest.raises(ValueError):
        LlamaPromptLookupDecoding(num_pred_tokens=0)


@pytest.fixture(scope="module")
def plain(llama_f32_path):
    model = Llama(str(llama_f32_path), **EXACT)
    yield model
    model.close()


@pytest.fixture(scope="module")
def spec(llama_f32_path):
    model = Llama(str(llama_f32_path), draft_model=LlamaPromptLookupDecoding(num_pred_tokens=6), **EXACT)
    yield model
    model.close()


async def completions(llm: Llama, concurrently: bool, **kwargs) -> list[dict]:
    out: list[dict] = [{}] * len(PROMPTS)

    async def run(i: int) -> None:
        out[i] = await llm.create_completion(PROMPTS[i], **kwargs)

    if concurrently:
        async with anyio.create_task_group() as tg:
            for i in range(len(PROMPTS)):
                tg.start_soon(run, i)
    else:
        for i in range(len(PROMPTS)):
            await run(i)
    return out


# Random weights rarely repeat their context; this grammar makes the text repeat, as code edits
# and extraction do with real models, so that some of prompt lookup's proposals are right (not
# most: the model spells each repetition with other tokens).
REPEAT = 'root ::= ("the cat sat on the mat and the dog sat on the log, ")+'


@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=0.9, top_k=8, seed=7),
                                      dict(temperature=0.0, grammar=REPEAT),
                                      dict(temperature=0.9, top_k=8, seed=7, grammar=REPEAT)],
                         ids=["greedy", "sampled", "greedy-repeating", "sampled-repeating"])
async def test_output_is_identical_with_and_without_speculation(plain, spec, sampling):
    before = spec.stats()
    expected = await completions(plain, False, max_tokens=40, **sampling)
    alone = await completions(spec, False, max_tokens=40, **sampling)
    together = await completions(spec, True, max_tokens=40, **sampling)
    texts = [[c["choices"][0]["text"] for c in run] for run in (expected, alone, together)]
    assert texts[1] == texts[0] and texts[2] == texts[0]
    counts = [[(c["usage"]["prompt_tokens"], c["usage"]["completion_tokens"]) for c in run] for run in (expected, alone)]
    assert counts[1] == counts[0]
    if "grammar" in sampling:
        stats = spec.stats()
        assert stats.draft_tokens_accepted - before.draft_tokens_accepted > 10  # proposals were confirmed


class _Oracle(LlamaDraftModel):
    """Knows the reply and proposes its next tokens, every third one wrong."""

    def __init__(self, sequence: list[int]) -> None:
        self.sequence = sequence

    def __call__(self, input_ids, /, **kwargs):
        n = len(input_ids)
        assert list(input_ids) == self.sequence[:n]  # the engine shows the sequence as decoded so far
        proposal = list(self.sequence[n:n + 5])
        for k in range(2, len(proposal), 3):
            proposal[k] = (proposal[k] + 1) % 1000
        return np.array(proposal, dtype=np.intc)


class _Recorder(LlamaDraftModel):
    """Proposes nothing; remembers the longest sequence it was shown."""

    def __init__(self) -> None:
        self.sequence: list[int] = []

    def __call__(self, input_ids, /, **kwargs):
        if len(input_ids) > len(self.sequence):
            self.sequence = [int(t) for t in input_ids]
        return np.empty(0, dtype=np.intc)


async def test_proposals_are_kept_up_to_the_first_wrong_one(llama_f32_path, plain):
    recorder = _Recorder()
    async with Llama(str(llama_f32_path), draft_model=recorder, **EXACT) as llm:
        await llm.create_completion(PROMPTS[0], max_tokens=40, temperature=0.0)
    reference = await plain.create_completion(PROMPTS[0], max_tokens=30, temperature=0.0)
    async with Llama(str(llama_f32_path), draft_model=_Oracle(recorder.sequence), **EXACT) as llm:
        got = await llm.create_completion(PROMPTS[0], max_tokens=30, temperature=0.0)
        stats = llm.stats()
    assert got["choices"][0]["text"] == reference["choices"][0]["text"]
    assert stats.draft_tokens_accepted >= stats.draft_tokens // 3 > 0
    assert stats.draft_tokens_accepted < stats.draft_tokens  # the wrong ones were refused
    assert stats.decode_calls < 25  # fewer steps than tokens


async def test_stops_and_logprobs_are_exact_under_speculation(plain, spec):
    reference = await plain.create_completion(PROMPTS[0], max_tokens=30, temperature=0.0, logprobs=2)
    text = reference["choices"][0]["text"]
    stop = text[len(text) // 2: len(text) // 2 + 3]
    for kwargs in (dict(logprobs=2), dict(stop=[stop]), dict(max_tokens=7)):
        args = dict(max_tokens=30, temperature=0.0) | kwargs
        a = await plain.create_completion(PROMPTS[0], **args)
        b = await spec.create_completion(PROMPTS[0], **args)
        assert b["choices"][0]["text"] == a["choices"][0]["text"]
        assert b["choices"][0]["finish_reason"] == a["choices"][0]["finish_reason"]
        assert b["usage"]["completion_tokens"] == a["usage"]["completion_tokens"]
        if "logprobs" in kwargs:
            assert b["choices"][0]["logprobs"]["tokens"] == a["choices"][0]["logprobs"]["tokens"]
            np.testing.assert_allclose(b["choices"][0]["logprobs"]["token_logprobs"],
                                       a["choices"][0]["logprobs"]["token_logprobs"], atol=1e-4)


async def test_streams_under_speculation_equal_the_whole_reply(spec):
    whole = await spec.create_completion(PROMPTS[2], max_tokens=30, temperature=0.0)
    stream = await spec.create_completion(PROMPTS[2], max_tokens=30, temperature=0.0, stream=True)
    assert "".join([c["choices"][0]["text"] async for c in stream]) == whole["choices"][0]["text"]


async def test_a_cached_state_after_speculation_holds_exactly_its_tokens(llama_f32_path, plain):
    async with Llama(str(llama_f32_path), draft_model=LlamaPromptLookupDecoding(), **EXACT) as llm:
        llm.set_cache(LlamaRAMCache())
        reference = await plain.create_completion(PROMPTS[0], max_tokens=20, temperature=0.0)
        stop = reference["choices"][0]["text"][5:8]
        first = await llm.create_completion(PROMPTS[0], max_tokens=20, temperature=0.0, stop=[stop])
        expected = await plain.create_completion(PROMPTS[0], max_tokens=20, temperature=0.0, stop=[stop])
        assert first["choices"][0]["text"] == expected["choices"][0]["text"]
        # a second engine restores that state from the cache and must continue correctly
        async with Llama(str(llama_f32_path), **EXACT) as other:
            other.set_cache(llm.cache)
            longer = PROMPTS[0] + first["choices"][0]["text"] + " more"
            got = await other.create_completion(longer, max_tokens=10, temperature=0.0)
            assert got["choices"][0]["text"] == \
                (await plain.create_completion(longer, max_tokens=10, temperature=0.0))["choices"][0]["text"]


class _Unhelpful(LlamaDraftModel):
    """Proposes nonsense: ids out of range, negative ids, or fails."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, input_ids, /, **kwargs):
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("draft model failed")
        if self.calls % 3 == 1:
            return np.array([5, 10**9, 7], dtype=np.int64)
        return np.array([-3, 4], dtype=np.intc)


async def test_a_bad_draft_model_never_changes_the_output(llama_f32_path, plain):
    async with Llama(str(llama_f32_path), draft_model=_Unhelpful(), **EXACT) as llm:
        got = await llm.create_completion(PROMPTS[1], max_tokens=20, temperature=0.0)
    expected = await plain.create_completion(PROMPTS[1], max_tokens=20, temperature=0.0)
    assert got["choices"][0]["text"] == expected["choices"][0]["text"]


def test_a_draft_model_must_be_callable(llama_f32_path):
    with pytest.raises(TypeError, match="draft_model"):
        Llama(str(llama_f32_path), draft_model="lookup", n_ctx=64)


def test_a_model_draft_proposes_its_greedy_continuation(llama_f32_path):
    from allama import LlamaModelDraft

    draft = LlamaModelDraft(str(llama_f32_path), num_pred_tokens=4, n_ctx=256, n_slots=2)
    prompt = Llama(str(llama_f32_path), vocab_only=True).tokenize(PROMPTS[0].encode())
    first = draft(np.array(prompt, np.intc)).tolist()
    assert len(first) == 4
    # the same sequence, one token further: the slot's KV is reused and the rest continues
    assert draft(np.array(prompt + first[:1], np.intc)).tolist()[:3] == first[1:]
    assert draft.propose(np.array(prompt, np.intc), 2).tolist() == first[:2]
    assert draft(np.array([-5, 1], np.intc)).size == 0            # a media placeholder
    assert draft(np.array([10**6], np.intc)).size == 0            # an id it does not have
    draft.close()


async def test_a_model_draft_of_the_same_model_is_always_right(llama_f32_path, plain):
    from allama import LlamaModelDraft

    draft = LlamaModelDraft(str(llama_f32_path), num_pred_tokens=6, n_ctx=256, n_slots=4)
    async with Llama(str(llama_f32_path), draft_model=draft, **EXACT) as llm:
        alone = await completions(llm, False, max_tokens=30, temperature=0.0)
        together = await completions(llm, True, max_tokens=30, temperature=0.0)
        stats = llm.stats()
    expected = await completions(plain, False, max_tokens=30, temperature=0.0)
    texts = [[c["choices"][0]["text"] for c in run] for run in (expected, alone, together)]
    assert texts[1] == texts[0] and texts[2] == texts[0]
    assert stats.draft_tokens_accepted == stats.draft_tokens > 0  # greedy by the same weights: every proposal holds
    assert stats.decode_calls < stats.tokens_generated / 2


async def test_a_model_draft_of_another_model_changes_nothing(models_dir, llama_f32_path, plain):
    import dataclasses

    from allama import LlamaModelDraft
    from allama.testing.model_builder import build_llama

    from ..conftest import TINY_LLAMA

    other = build_llama(models_dir / "draft-other.gguf", dataclasses.replace(TINY_LLAMA, seed=4321, n_layer=1))[0]
    async with Llama(str(llama_f32_path), draft_model=LlamaModelDraft(str(other), n_ctx=256), **EXACT) as llm:
        got = await completions(llm, True, max_tokens=20, temperature=0.0)
    expected = await completions(plain, False, max_tokens=20, temperature=0.0)
    assert [c["choices"][0]["text"] for c in got] == [c["choices"][0]["text"] for c in expected]
