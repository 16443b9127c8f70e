"""Sessions: one sequence kept between turns, beside other requests; saved and loaded states."""

from __future__ import annotations

import anyio
import pytest

from allama import AllamaError, ContextOverflowError, Llama, LlamaSession, LlamaState

from .tiny_models import GREEDY

pytestmark = pytest.mark.anyio

N_CTX = 256


@pytest.fixture(scope="module")
def llm_options():
    return dict(n_ctx=N_CTX, n_parallel=4, n_batch=64, n_threads=2, n_threads_batch=2)


@pytest.fixture(scope="module")
def reference(llama_f32_path):
    """Evaluates every prompt in full: no kept sequences to reuse, no sessions."""
    model = Llama(str(llama_f32_path), n_ctx=N_CTX, n_parallel=1, n_keep=0, n_threads=2, n_threads_batch=2)
    yield model
    model.close()


def words(llm: Llama, text: str) -> list[int]:
    return llm.tokenize(text.encode(), add_bos=False)


async def text_of(llm_or_session, prompt, max_tokens: int = 8, **kw) -> str:
    out = await llm_or_session.create_completion(prompt, max_tokens=max_tokens, ignore_eos=True, **GREEDY, **kw)
    return out["choices"][0]["text"]


async def test_second_turn_evaluates_only_the_new_tokens_and_matches_a_full_prompt(llm, reference):
    first = llm.tokenize(b"Once upon a time in a quiet village")
    async with llm.session() as session:
        await text_of(session, first, 6)
        history = session.tokens
        assert history[:len(first)] == first and len(history) == len(first) + 5  # the last token is not evaluated
        second = history + words(llm, " the old miller said")
        before = llm.stats()
        out = await session.create_completion(second, max_tokens=8, ignore_eos=True, **GREEDY)
        after = llm.stats()
    assert after.prompt_tokens_evaluated - before.prompt_tokens_evaluated == len(second) - len(history)
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == len(history)
    assert out["choices"][0]["text"] == await text_of(reference, second)


async def test_text_turns_reuse_the_common_prefix(llm, reference):
    prompt = "The river ran past the mill and"
    async with llm.session() as session:
        reply = await text_of(session, prompt)
        follow_up = prompt + reply + " then the rain came"
        out = await session.create_completion(follow_up, max_tokens=8, ignore_eos=True, **GREEDY)
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] >= len(llm.tokenize(prompt.encode()))
    assert out["choices"][0]["text"] == await text_of(reference, follow_up)


async def test_chat_turns_continue_the_conversation(llm, reference):
    messages = [{"role": "user", "content": "Tell me about the sea."}]
    async with llm.session() as session:
        first = await session.create_chat_completion(messages, max_tokens=6, **GREEDY)
        messages += [first["choices"][0]["message"], {"role": "user", "content": "And the sky?"}]
        second = await session.create_chat_completion(messages, max_tokens=6, **GREEDY)
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    expected = await reference.create_chat_completion(messages, max_tokens=6, **GREEDY)
    assert second["choices"][0]["message"] == expected["choices"][0]["message"]


async def test_sessions_run_beside_concurrent_requests(llm, reference):
    prompts = [f"Request number {i} asks about" for i in range(3)]
    history_prompts = [llm.tokenize(f"Session {i} starts with a story about".encode()) for i in range(2)]
    results: dict[str, object] = {}

    async def converse(i: int) -> None:
        async with llm.session() as session:
            await text_of(session, history_prompts[i], 6)
            history = session.tokens
            second = history + words(llm, " and later")
            out = await session.create_completion(second, max_tokens=10, ignore_eos=True, **GREEDY)
            cached = out["usage"]["prompt_tokens_details"]["cached_tokens"]
            results[f"s{i}"] = (second, out["choices"][0]["text"], cached, len(history))

    async def request(i: int) -> None:
        results[f"r{i}"] = await text_of(llm, prompts[i], 24)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(request, i)
        for i in range(2):
            tg.start_soon(converse, i)
    for i in range(3):
        assert results[f"r{i}"] == await text_of(reference, prompts[i], 24)
    for i in range(2):
        second, text, cached, history = results[f"s{i}"]
        assert cached == history
        assert text == await text_of(reference, second, 10)


async def test_saved_state_continues_identically_in_a_new_session_and_from_a_file(llm, tmp_path):
    async with llm.session() as session:
        await text_of(session, llm.tokenize(b"A saved conversation about bread"), 6)
        state = await session.save_state()
        follow_up = session.tokens + words(llm, " baked at dawn")
        expected = await text_of(session, follow_up)
    assert isinstance(state, LlamaState) and state.tokens == follow_up[:state.n_tokens]
    path = tmp_path / "conversation.state"
    await state.save(path)
    for loaded in (state, await LlamaState.load(path)):
        async with llm.session() as other:
            await other.load_state(loaded)
            assert other.tokens == state.tokens
            out = await other.create_completion(follow_up, max_tokens=8, ignore_eos=True, **GREEDY)
        assert out["choices"][0]["text"] == expected
        assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == state.n_tokens


async def test_a_state_loads_into_another_llama(llm, llama_f32_path):
    async with llm.session() as session:
        await text_of(session, llm.tokenize(b"Moving between engines"), 4)
        state = await session.save_state()
        follow_up = session.tokens + words(llm, " works")
        expected = await text_of(session, follow_up)
    other_llm = Llama(str(llama_f32_path), n_ctx=N_CTX, n_parallel=2, n_threads=2, n_threads_batch=2)
    try:
        await other_llm.load_state(state)  # the default session
        assert (await other_llm.save_state()).tokens == state.tokens
        out = await other_llm.create_completion(follow_up, max_tokens=8, ignore_eos=True, **GREEDY)
    finally:
        await other_llm.aclose()
    assert out["choices"][0]["text"] == expected
    # A plain request shares the default session's KV (it stays the session's).
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == state.n_tokens


async def test_a_cancelled_turn_leaves_kv_that_matches_the_recorded_tokens(llm, reference):
    async with llm.session() as session:
        await text_of(session, llm.tokenize(b"Interrupted story:"), 4)
        prompt = session.tokens + words(llm, " it went on and on")
        stream = await session.create_completion(prompt, max_tokens=100, ignore_eos=True, stream=True, **GREEDY)
        async with stream:
            seen = 0
            async for _ in stream:
                seen += 1
                if seen == 5:
                    break
        for _ in range(200):  # the cancellation lands at the decode thread's next step
            if llm.stats().active == 0:
                break
            await anyio.sleep(0.01)
        history = session.tokens
        assert history[:len(prompt)] == prompt and len(history) < len(prompt) + 100
        follow_up = history + words(llm, " until")
        out = await session.create_completion(follow_up, max_tokens=8, ignore_eos=True, **GREEDY)
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == len(history)
    assert out["choices"][0]["text"] == await text_of(reference, follow_up)


async def test_a_turn_cancelled_by_its_task_keeps_the_session_usable(llm, reference):
    async with llm.session() as session:
        prompt = llm.tokenize(b"A turn that times out")
        with anyio.move_on_after(0.05):
            await session.create_completion(prompt, max_tokens=200, ignore_eos=True, **GREEDY)
        follow_up = prompt + words(llm, " but then")
        assert await text_of(session, follow_up) == await text_of(reference, follow_up)


async def test_a_turn_over_n_ctx_raises_context_overflow(llm):
    async with llm.session() as session:
        with pytest.raises(ContextOverflowError):
            await session.create_completion([1] + [500] * N_CTX, max_tokens=4)
        assert await text_of(session, llm.tokenize(b"Still fine"), 2)


async def test_the_session_sequence_is_never_taken_by_prefix_reuse_eviction(llm):
    async with llm.session() as session:
        await text_of(session, llm.tokenize(b"Pinned history that must stay"), 4)
        history = session.tokens
        for i in range(12):  # far more finished requests than kept sequence ids
            await text_of(llm, f"Churn {i} with a different prompt", 3)
        out = await session.create_completion(history + words(llm, " here"), max_tokens=2, **GREEDY)
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == len(history)


async def test_one_turn_at_a_time(llm):
    async with llm.session() as session:
        stream = await session.create_completion(llm.tokenize(b"First"), max_tokens=20, ignore_eos=True, stream=True)
        with pytest.raises(RuntimeError, match="running a turn"):
            await session.create_completion(llm.tokenize(b"Second"), max_tokens=2)
        with pytest.raises(RuntimeError, match="running a turn"):
            await session.save_state()
        async with stream:
            async for _ in stream:
                pass
        assert await text_of(session, llm.tokenize(b"Second"), 2)


async def test_a_turn_takes_one_prompt_and_one_choice(llm):
    async with llm.session() as session:
        with pytest.raises(ValueError, match="one prompt with n=1"):
            await session.create_completion(["a", "b"], max_tokens=2)
        with pytest.raises(ValueError, match="one prompt with n=1"):
            await session.create_completion("a", n=2, max_tokens=2)
        assert await text_of(session, "Usable after", 2)


async def test_sessions_are_limited_to_the_spare_sequences_and_closing_frees_one(llm):
    sessions = [llm.session() for _ in range(4)]  # n_keep defaults to n_parallel = 4
    for session in sessions:
        await session.__aenter__()
    assert llm.stats().sessions == 4
    extra = llm.session()
    with pytest.raises(AllamaError, match="at most 4 sessions"):
        await extra.__aenter__()
    assert await text_of(llm, "Requests still run", 2)  # the running ids are not the sessions'
    await sessions[0].aclose()
    await extra.__aenter__()
    for session in sessions[1:] + [extra]:
        await session.aclose()
    assert llm.stats().sessions == 0
    with pytest.raises(AllamaError, match="closed"):
        await extra.create_completion("x", max_tokens=1)


async def test_load_state_refuses_a_state_that_is_not_one_sequence(llm):
    session: LlamaSession = llm.session()
    state = LlamaState.of_sequence([1, 2, 3], b"not kv bytes", 0)
    with pytest.raises(ValueError):
        await session.load_state(state)
    context_state = LlamaState([1], [], 1, b"", 0, 0, scope="context")
    with pytest.raises(ValueError, match="whole private context"):
        await session.load_state(context_state)
    assert session.n_tokens == 0
    assert await text_of(session, "Works after a bad load", 2)
    await session.aclose()


async def test_closing_the_model_closes_its_sessions(llama_f32_path):
    model = Llama(str(llama_f32_path), n_ctx=N_CTX, n_parallel=1, n_threads=2, n_threads_batch=2)
    session = model.session()
    await text_of(session, "Before closing", 2)
    await model.aclose()
    with pytest.raises(AllamaError):
        await session.create_completion("After", max_tokens=1)
    await session.aclose()  # a no-op now


async def test_save_state_after_a_call_holds_what_that_call_evaluated(llama_f32_path):
    # llama-cpp-python's pattern: llm(prompt); s = llm.save_state(); ...; llm.load_state(s)
    async with Llama(str(llama_f32_path), n_ctx=N_CTX, n_parallel=2, n_threads=1) as llm:
        assert (await llm.save_state()).n_tokens == 0  # nothing evaluated yet
        prompt = llm.tokenize(b"The state of a plain call")
        first = await llm.create_completion(prompt, max_tokens=6, ignore_eos=True, logprobs=0, **GREEDY)
        state = await llm.save_state()
        pieces = first["choices"][0]["logprobs"]["tokens"]
        # the prompt and every output token but the last (sampled, never evaluated)
        assert state.n_tokens == len(prompt) + 5 and state.tokens[:len(prompt)] == prompt
        assert [llm.detokenize([t]).decode() for t in state.tokens[len(prompt):]] == pieces[:5]
        follow_up = state.tokens + words(llm, " and after")
        expected = await text_of(llm, follow_up)

    async with Llama(str(llama_f32_path), n_ctx=N_CTX, n_parallel=2, n_threads=1) as fresh:
        await fresh.load_state(state)
        assert (await fresh.save_state()).tokens == state.tokens  # the loaded state, until the next call
        out = await fresh.create_completion(follow_up, max_tokens=8, ignore_eos=True, **GREEDY)
        assert out["choices"][0]["text"] == expected
        assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == state.n_tokens
        assert (await fresh.save_state()).n_tokens == len(follow_up) + 7  # now the last call's


async def test_save_state_refuses_when_the_last_calls_kv_was_not_kept(llama_f32_path):
    async with Llama(str(llama_f32_path), n_ctx=N_CTX, n_parallel=1, n_keep=0, n_threads=1) as llm:
        await llm.create_completion(llm.tokenize(b"Not kept"), max_tokens=2, **GREEDY)
        with pytest.raises(AllamaError, match="no longer held"):
            await llm.save_state()
