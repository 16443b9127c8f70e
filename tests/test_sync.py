"""allama.sync.Llama: blocking calls and generator streams over the same engine."""

from __future__ import annotations

import asyncio
import threading

import pytest

from allama.sync import Llama


@pytest.fixture(scope="module")
def llm(llama_f32_path):
    with Llama(str(llama_f32_path), n_ctx=256, n_parallel=4) as model:
        yield model


def test_blocking_completion_has_the_openai_shape(llm):
    out = llm.create_completion("Hello", max_tokens=4, temperature=0)
    assert out["object"] == "text_completion"
    assert out["usage"]["completion_tokens"] == 4
    assert llm("Hello", max_tokens=4, temperature=0)["choices"][0]["text"] == out["choices"][0]["text"]


def test_stream_is_a_generator_of_chunks(llm):
    full = llm.create_completion("Stream", max_tokens=6, temperature=0)["choices"][0]["text"]
    chunks = list(llm.create_completion("Stream", max_tokens=6, temperature=0, stream=True))
    assert "".join(c["choices"][0]["text"] for c in chunks) == full
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_leaving_a_stream_early_frees_its_sequence(llm):
    stream = llm.create_completion("Long", max_tokens=200, ignore_eos=True, stream=True)
    next(stream)
    stream.close()
    for _ in range(200):
        if llm.stats().active == 0:
            break
        threading.Event().wait(0.01)
    assert llm.stats().active == 0


def test_threads_calling_at_once_are_batched(llm):
    expected = [llm.create_completion(f"Thread {i}", max_tokens=12, temperature=0)["choices"][0]["text"]
                for i in range(4)]
    before = llm.stats().decode_calls
    results = [None] * 4

    def run(i):
        results[i] = llm.create_completion(f"Thread {i}", max_tokens=12, temperature=0)["choices"][0]["text"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected
    assert llm.stats().decode_calls - before < 4 * 12


def test_works_from_inside_an_event_loops_thread_pool(llm):
    async def main():
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: llm.create_completion("Pool", max_tokens=3, temperature=0))

    assert asyncio.run(main())["usage"]["completion_tokens"] == 3


def test_tokenizer_calls_match_llama_cpp_python(llm):
    tokens = llm.tokenize(b"Hello world")
    assert tokens[0] == llm.token_bos()
    assert llm.detokenize(tokens).strip() == b"Hello world"
    assert llm.n_ctx() == 256 and llm.n_vocab() == 32000


def test_eval_and_sample_follow_greedy_completion(llm):
    expected = llm.create_completion("Step by step", max_tokens=6, temperature=0)["choices"][0]["text"]
    llm.reset()
    prompt = llm.tokenize(b"Step by step", special=True)
    llm.eval(prompt)
    out = []
    for _ in range(6):
        token = llm.sample(temp=0.0)
        out.append(token)
        llm.eval([token])
    assert llm.detokenize(out, prev_tokens=prompt).decode() == expected
    assert llm.n_tokens == len(llm.tokenize(b"Step by step")) + 6
    assert list(llm._input_ids[-6:]) == out
    assert llm._scores.shape[-1] == llm.n_vocab()


def test_generate_yields_the_same_tokens(llm):
    expected = llm.create_completion("Generate", max_tokens=5, temperature=0)["choices"][0]["text"]
    tokens = []
    prompt = llm.tokenize(b"Generate", special=True)
    for token in llm.generate(prompt, temp=0.0):
        tokens.append(token)
        if len(tokens) == 5:
            break
    assert llm.detokenize(tokens, prev_tokens=prompt).decode() == expected


def test_saved_state_restores_the_history(llm):
    llm.reset()
    llm.eval(llm.tokenize(b"Remember this"))
    state = llm.save_state()
    first = llm.sample(temp=0.0)
    llm.eval([5, 6, 7])
    llm.load_state(state)
    assert llm.n_tokens == state.n_tokens
    assert llm.sample(temp=0.0) == first


def test_tokenizer_object_encodes_and_decodes(llm, llama_f32_path):
    from allama.tokenizer import LlamaTokenizer

    tok = llm.tokenizer()
    ids = tok.encode("Hello world")
    assert ids == llm.tokenize(b"Hello world", special=True)
    assert tok.decode(ids).strip() == "Hello world"
    standalone = LlamaTokenizer.from_ggml_file(llama_f32_path)
    assert standalone.encode("Hello world") == ids


def test_chat_completion_blocking_and_streamed(llm):
    messages = [{"role": "user", "content": "Hi"}]
    out = llm.create_chat_completion(messages, max_tokens=3, temperature=0)
    assert out["object"] == "chat.completion"
    chunks = list(llm.create_chat_completion(messages, max_tokens=3, temperature=0, stream=True))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == out["choices"][0]["message"]["content"]


def test_sessions_save_load_and_the_cache_work_blocking(llama_f32_path, tmp_path):
    from allama import LlamaDiskCache

    with Llama(str(llama_f32_path), n_ctx=256, n_parallel=2) as model:
        with model.session() as session:
            session.create_completion("A blocking session", max_tokens=4, temperature=0)
            follow_up = session.tokens + model.tokenize(b" goes on", add_bos=False)
            streamed = "".join(c["choices"][0]["text"] for c in session.create_completion(
                follow_up, max_tokens=6, temperature=0, stream=True))
            state = session.save_state()
        model.load_state(state)  # the default session
        assert model.save_state().tokens == state.tokens
        model.set_cache(LlamaDiskCache(cache_dir=tmp_path))
        out = model.create_completion(follow_up, max_tokens=6, temperature=0)
        assert out["choices"][0]["text"] == streamed
        assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == len(follow_up) - 1
        assert len(model.cache) == 1


# --- llama-cpp-python's attributes (issue 15) ---


def test_model_is_a_handle_the_low_level_api_takes(llm):
    from allama import llama_cpp

    assert llama_cpp.llama_model_n_embd(llm.model) == llm.n_embd()
    assert llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(llm.model)) == llm.n_vocab()
    assert llm._is_recurrent is False and llm._is_hybrid is False


def test_ctx_is_the_eval_context_and_shows_its_logits(llm):
    from allama import llama_cpp

    tokens = llm.tokenize(b"The quick brown fox")
    llm.reset()
    llm.eval(tokens)
    assert llama_cpp.llama_n_ctx(llm.ctx) == llm.n_ctx()
    logits = llama_cpp.llama_get_logits(llm.ctx)
    assert logits.shape == (llm.n_vocab(),)
    assert (logits == llm.scores[0]).all()
    assert llm.ctx is llm.ctx


def test_params_report_the_construction_and_are_copies(llm):
    params = llm.context_params
    assert llm.n_batch == 256  # n_batch 512 clamped to n_ctx, as llama-cpp-python
    assert params.n_batch == 512  # as the context was made (llama.cpp clamps it itself)
    assert params.n_ctx >= llm.n_ctx()
    assert params.n_threads == llm.n_threads
    params.n_batch = 7
    assert llm.context_params.n_batch == 512
    assert llm.model_params.use_mmap is True and llm.model_params.vocab_only is False
    assert llm.numa is False


def test_vocab_only_has_no_context(llama_f32_path):
    with Llama(str(llama_f32_path), vocab_only=True, numa=True) as vocab:
        assert vocab.ctx is None and vocab.context_params is None
        assert vocab.model_params.vocab_only is True
        assert vocab.numa is True
        assert vocab.tokenize(b"Hello")


def test_setting_chat_format_changes_later_chats(llm):
    messages = [{"role": "user", "content": "Hi"}]
    before = llm.create_chat_completion(messages, max_tokens=1)["usage"]["prompt_tokens"]
    llm.chat_format = "openbuddy"
    try:
        assert llm.async_llama.chat_format == "openbuddy"
        after = llm.create_chat_completion(messages, max_tokens=1)["usage"]["prompt_tokens"]
        openbuddy = len(llm.tokenize(llm.async_llama.chat_formatter()(messages=messages).prompt.encode()))
    finally:
        llm.chat_format = None
    assert after == openbuddy > before + 50


def test_setting_chat_handler_routes_later_chats(llm):
    seen = []

    async def handler(*, llama, messages, **request):
        seen.append((llama, messages))
        return {"id": "from-handler"}

    llm.chat_handler = handler
    try:
        assert llm.create_chat_completion([{"role": "user", "content": "Hi"}])["id"] == "from-handler"
    finally:
        llm.chat_handler = None
    assert seen[0][0] is llm.async_llama
    assert llm.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=1)["id"] != "from-handler"


def test_setting_draft_model_turns_speculation_on_and_off(llm):
    from allama import LlamaPromptLookupDecoding

    prompt = "a b c a b c a b c a b c"
    plain = llm.create_completion(prompt, max_tokens=24, temperature=0)["choices"][0]["text"]
    before = llm.stats().draft_tokens
    llm.draft_model = LlamaPromptLookupDecoding(max_ngram_size=2, num_pred_tokens=4)
    try:
        drafted = llm.create_completion(prompt, max_tokens=24, temperature=0)["choices"][0]["text"]
        assert llm.stats().draft_tokens > before
    finally:
        llm.draft_model = None
    assert drafted == plain
    after = llm.stats().draft_tokens
    llm.create_completion(prompt, max_tokens=24, temperature=0)
    assert llm.stats().draft_tokens == after
    with pytest.raises(TypeError, match="draft_model"):
        llm.draft_model = "not a draft model"


def test_sample_and_generate_take_plain_lists_of_processors_and_criteria(llm):
    prompt = llm.tokenize(b"Lists", special=True)
    banned: list[int] = []

    def ban_first_choice(input_ids, scores):
        scores = scores.copy()
        scores[banned] = -float("inf")
        return scores

    def record(input_ids, scores):
        if not banned:
            banned.append(int(scores.argmax()))
        return scores

    llm.reset()
    llm.eval(prompt)
    token = llm.sample(temp=0.0, logits_processor=[record, ban_first_choice])
    assert token != banned[0]  # both ran, in order
    steps = []
    out = list(llm.generate(prompt, temp=0.0, logits_processor=[ban_first_choice],
                            stopping_criteria=[lambda ids, scores: steps.append(1) is not None or len(steps) >= 3]))
    assert banned[0] not in out and 1 <= len(out) <= 3


def test_eval_tokens_hold_the_last_completion_then_the_eval_history(llama_f32_path):
    with Llama(str(llama_f32_path), n_ctx=128, n_threads=1) as fresh:
        assert list(fresh.eval_tokens) == [] and len(fresh.eval_logits) == 0
        prompt = fresh.tokenize(b"Counting tokens")
        fresh.create_completion(prompt, max_tokens=4, temperature=0, ignore_eos=True)
        # llama-cpp-python's eval_tokens after llm(prompt): the prompt and the evaluated output
        assert list(fresh.eval_tokens)[:len(prompt)] == prompt and len(fresh.eval_tokens) == len(prompt) + 3
        fresh.reset()
        fresh.eval(prompt)
        assert list(fresh.eval_tokens) == prompt and fresh.eval_tokens.maxlen == 128
        (last,) = fresh.eval_logits
        assert len(last) == fresh.n_vocab() and max(last) == max(fresh.scores[0])
