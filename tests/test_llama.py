"""allama.Llama: the async completion API's shapes, options and errors."""

from __future__ import annotations

import time

import anyio
import numpy as np
import pytest

from allama import AsyncStream, Llama, _native
from allama.errors import ContextOverflowError, EngineClosedError, GrammarError, QueueFullError, RequestTimeoutError
from allama.llama_prompts import prompt_tokens

from .scripted import byte_tokens, forced_tokens, piece_token

pytestmark = pytest.mark.anyio


async def test_response_has_the_openai_shape(llm):
    out = await llm.create_completion("Hello", max_tokens=4, temperature=0)
    assert set(out) == {"id", "object", "created", "model", "choices", "usage"}
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-")
    assert out["choices"][0].keys() == {"text", "index", "logprobs", "finish_reason"}
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["prompt_tokens"] == len(llm.tokenize(b"Hello"))
    assert out["usage"]["completion_tokens"] == 4
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + 4


async def test_call_is_create_completion(llm):
    a = await llm("Hello", max_tokens=3, temperature=0)
    b = await llm.create_completion("Hello", max_tokens=3, temperature=0)
    assert a["choices"][0]["text"] == b["choices"][0]["text"]


async def test_stream_chunks_concatenate_to_the_full_text(llm):
    full = await llm.create_completion("Stream me", max_tokens=12, temperature=0)
    stream = await llm.create_completion("Stream me", max_tokens=12, temperature=0, stream=True,
                                         stream_options={"include_usage": True})
    assert isinstance(stream, AsyncStream)
    chunks = [c async for c in stream]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 12
    text_chunks = chunks[:-1]
    assert all(c["object"] == "text_completion" and c["id"] == text_chunks[0]["id"] for c in text_chunks)
    assert "".join(c["choices"][0]["text"] for c in text_chunks) == full["choices"][0]["text"]
    assert text_chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in text_chunks[:-1])


async def test_token_id_prompt_equals_text_prompt(llm):
    tokens = llm.tokenize(b"The answer is", special=True)
    a = await llm.create_completion(tokens, max_tokens=5, temperature=0)
    b = await llm.create_completion("The answer is", max_tokens=5, temperature=0)
    assert a["choices"][0]["text"] == b["choices"][0]["text"]


async def test_token_id_prompts_may_be_numpy_arrays_one_row_a_prompt(llm):
    tokens = llm.tokenize(b"The answer is", special=True)
    as_list = await llm.create_completion(tokens, max_tokens=4, temperature=0)
    as_array = await llm.create_completion(np.array(tokens, dtype=np.int32), max_tokens=4, temperature=0)
    assert as_array["choices"][0]["text"] == as_list["choices"][0]["text"]
    rows = await llm.create_completion(np.array([tokens, tokens]), max_tokens=4, temperature=0)
    assert [c["text"] for c in rows["choices"]] == [as_list["choices"][0]["text"]] * 2


async def test_list_of_prompts_gives_one_choice_each(llm):
    out = await llm.create_completion(["One", "Two", "Three"], max_tokens=3, temperature=0)
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    solo = await llm.create_completion("Two", max_tokens=3, temperature=0)
    assert out["choices"][1]["text"] == solo["choices"][0]["text"]


async def test_n_choices_share_one_prompt_evaluation(llm):
    prompt = "Several continuations of this prompt"
    before = llm.stats()
    out = await llm.create_completion(prompt, max_tokens=8, n=3, temperature=1.0, seed=123)
    after = llm.stats()
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    evaluated = after.prompt_tokens_evaluated - before.prompt_tokens_evaluated
    assert evaluated <= len(llm.tokenize(prompt.encode(), special=True))
    for i in (0, 2):  # choice i samples with seed + i
        solo = await llm.create_completion(prompt, max_tokens=8, temperature=1.0, seed=123 + i)
        assert out["choices"][i]["text"] == solo["choices"][0]["text"]


async def test_same_seed_same_text(llm):
    a = await llm.create_completion("Random", max_tokens=10, temperature=1.2, seed=9)
    b = await llm.create_completion("Random", max_tokens=10, temperature=1.2, seed=9)
    c = await llm.create_completion("Random", max_tokens=10, temperature=1.2, seed=10)
    assert a["choices"][0]["text"] == b["choices"][0]["text"] != c["choices"][0]["text"]


async def test_echo_prepends_the_prompt(llm):
    out = await llm.create_completion("Echo this", max_tokens=3, temperature=0, echo=True)
    plain = await llm.create_completion("Echo this", max_tokens=3, temperature=0)
    assert out["choices"][0]["text"] == "Echo this" + plain["choices"][0]["text"]


async def test_logprobs_are_the_log_softmax_of_the_logits(llm, llama_model):
    out = await llm.create_completion("Score me", max_tokens=3, temperature=0, logprobs=3)
    lp = out["choices"][0]["logprobs"]
    assert set(lp) == {"tokens", "text_offset", "token_logprobs", "top_logprobs"}
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 3
    assert "".join(lp["tokens"]) == out["choices"][0]["text"]
    assert lp["text_offset"][0] == len("Score me")
    assert all(len(top) == 3 for top in lp["top_logprobs"])  # greedy: the chosen token is among the top 3
    params = _native.ContextParams()
    params.flash_attn_type = 0  # as Llama(flash_attn=False)
    ctx = _native.Context(llama_model, params)
    tokens = llm.tokenize(b"Score me", special=True)
    batch = _native.Batch(len(tokens))
    batch.add_tokens(tokens, 0, 0, True)
    ctx.decode(batch)
    logits = ctx.logits(-1).astype(np.float64)
    expected = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
    assert lp["token_logprobs"][0] == pytest.approx(expected.max(), abs=1e-4)
    assert max(lp["top_logprobs"][0].values()) == pytest.approx(expected.max(), abs=1e-4)


async def test_echo_with_logprobs_scores_the_prompt(llm):
    out = await llm.create_completion("Score the prompt too", max_tokens=2, temperature=0, logprobs=1, echo=True)
    lp = out["choices"][0]["logprobs"]
    n_prompt = len(llm.tokenize(b"Score the prompt too", special=True)) - 1  # BOS is not listed
    assert len(lp["tokens"]) == n_prompt + 2
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert all(isinstance(v, float) and v <= 0 for v in lp["token_logprobs"][1:])
    assert lp["text_offset"][0] == 0


async def test_stop_string_split_across_tokens_is_never_emitted(llm):
    ids = [piece_token(llm, p) for p in (b"ab", b"c", b" ", b"ST", b"OP", b"tail")]
    stream = await llm.create_completion("x", max_tokens=20, temperature=0, stop=["STOP"], stream=True,
                                         logits_processor=forced_tokens(llm, ids))
    chunks = [c["choices"][0] async for c in stream]
    text = "".join(c["text"] for c in chunks)
    assert text == "abc "
    assert chunks[-1]["finish_reason"] == "stop"
    assert not any("S" in c["text"] for c in chunks)


async def test_utf8_character_split_across_byte_tokens_streams_whole(llm):
    ids = byte_tokens(llm, b"caf\xc3\xa9!")
    stream = await llm.create_completion("x", max_tokens=10, temperature=0, stream=True,
                                         logits_processor=forced_tokens(llm, ids))
    texts = [c["choices"][0]["text"] async for c in stream]
    assert "".join(texts) == "café!"
    assert all("\ufffd" not in t for t in texts)


async def test_stopping_criteria_ends_generation(llm):
    seen = []

    def stop_after_three(input_ids, logits):
        seen.append(len(input_ids))
        return len(seen) >= 3

    out = await llm.create_completion("Stop soon", max_tokens=20, temperature=0, stopping_criteria=stop_after_three)
    assert out["usage"]["completion_tokens"] == 3
    assert out["choices"][0]["finish_reason"] == "stop"


async def test_grammar_constrains_the_completion(llm):
    out = await llm.create_completion("Answer:", max_tokens=10, temperature=0, grammar='root ::= ("yes" | "no") "."')
    assert out["choices"][0]["text"] in ("yes.", "no.")
    with pytest.raises(GrammarError):
        await llm.create_completion("Answer:", grammar='root ::= "unclosed')


async def test_suffix_without_fim_tokens_is_a_clear_error(llm):
    with pytest.raises(ValueError, match="fill-in-the-middle"):
        await llm.create_completion("def f(", suffix="):\n    pass")


async def test_prompt_longer_than_the_window_is_rejected_before_running(llm):
    before = llm.stats().prompt_tokens
    with pytest.raises(ContextOverflowError, match="exceed context window of 512"):
        await llm.create_completion(list(range(100, 700)))
    assert llm.stats().prompt_tokens == before


async def test_bad_arguments_raise_value_error(llm):
    with pytest.raises(ValueError, match="out of range"):
        await llm.create_completion([1, 99999])
    with pytest.raises(ValueError):
        await llm.create_completion("x", n=0)
    with pytest.raises(ValueError):
        await llm.create_completion("x", n=5)  # more than n_parallel
    with pytest.raises(ValueError, match="repeat_penalty"):
        await llm.create_completion("x", repeat_penalty=0.0)


async def test_queue_full_raises(llama_f32_path):
    async with Llama(str(llama_f32_path), n_ctx=256, n_parallel=1, max_queue=1) as one:
        async with anyio.create_task_group() as tg:
            for i in range(2):
                tg.start_soon(lambda: one.create_completion("busy", max_tokens=200, ignore_eos=True))
            with anyio.fail_after(10):
                while one.stats().active + one.stats().queued < 2:
                    await anyio.sleep(0.001)
            with pytest.raises(QueueFullError, match="queue is full"):
                await one.create_completion("one too many")
            tg.cancel_scope.cancel()


async def test_aclose_fails_pending_requests(llama_f32_path):
    one = Llama(str(llama_f32_path), n_ctx=256, n_parallel=1)
    errors = []

    async def run():
        try:
            await one.create_completion("long", max_tokens=250, ignore_eos=True)
        except EngineClosedError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        tg.start_soon(run)
        with anyio.fail_after(10):
            while one.stats().active == 0:
                await anyio.sleep(0.001)
        await one.aclose()
    assert len(errors) == 2
    with pytest.raises(EngineClosedError):
        await one.create_completion("after close")


async def test_timeout_ends_a_request_with_a_clear_error(llama_f32_path):
    async with Llama(str(llama_f32_path), n_ctx=2048, n_parallel=1) as one:
        with pytest.raises(RequestTimeoutError, match="timeout of 0.05 s"):
            await one.create_completion("slow", max_tokens=2000, ignore_eos=True, timeout=0.05)
        assert one.stats().active == 0


async def test_load_off_loop_and_plain_calls(llama_f32_path):
    async with await Llama.load(str(llama_f32_path), n_ctx=128) as loaded:
        assert loaded.n_ctx() == 128
        assert loaded.n_vocab() == 32000
        assert loaded.token_bos() == 1 and loaded.token_eos() == 2
        assert loaded.metadata["general.architecture"] == "llama"
        tokens = loaded.tokenize(b"Hello world")
        assert tokens[0] == 1
        assert loaded.detokenize(tokens[1:]).strip() == b"Hello world"
        assert loaded.detokenize(tokens[2:], prev_tokens=tokens[:2]) == b" world"


async def test_vocab_only_model_tokenizes_but_cannot_generate(llama_f32_path):
    tok = Llama(str(llama_f32_path), vocab_only=True)
    assert tok.tokenize(b"hi") == [1, 7251]
    with pytest.raises(ValueError, match="vocab_only"):
        await tok.create_completion("hi")
    assert list(tok.eval_tokens) == []
    tok.close()


async def test_eval_tokens_hold_the_last_completion_even_after_close(llama_f32_path):
    one = Llama(str(llama_f32_path), n_ctx=128, n_parallel=1)
    assert list(one.eval_tokens) == [] and one.eval_tokens.maxlen == 128
    prompt = one.tokenize(b"Counting tokens")
    await one.create_completion(prompt, max_tokens=4, temperature=0, ignore_eos=True)
    # the prompt and the output but its last token, which was sampled and never evaluated
    evaluated = list(one.eval_tokens)
    assert evaluated[:len(prompt)] == prompt and len(evaluated) == len(prompt) + 3
    assert (await one.save_state()).tokens == evaluated
    await one.aclose()
    assert list(one.eval_tokens) == evaluated


async def test_a_stream_dropped_unread_frees_its_request(llama_f32_path):
    import gc

    async with Llama(str(llama_f32_path), n_ctx=1024, n_parallel=1) as one:
        stream = await one.create_completion("never read", max_tokens=900, ignore_eos=True, stream=True)
        with anyio.fail_after(10):
            while one.stats().active == 0:  # submitted at the await, before any read
                await anyio.sleep(0.001)
        del stream
        gc.collect()
        with anyio.fail_after(10):
            while one.stats().active:
                await anyio.sleep(0.01)
        assert one.stats().tokens_generated < 900


async def test_stream_errors_raise_at_the_await(llama_f32_path):
    async with Llama(str(llama_f32_path), n_ctx=256, n_parallel=1, max_queue=0) as one:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: one.create_completion("busy", max_tokens=200, ignore_eos=True))
            with anyio.fail_after(10):
                while one.stats().active == 0:
                    await anyio.sleep(0.001)
            with pytest.raises(QueueFullError):
                await one.create_completion("rejected", stream=True)
            tg.cancel_scope.cancel()


async def test_end_of_generation_token_is_not_text_or_a_completion_token(llm):
    ids = byte_tokens(llm, b"ok")
    out = await llm.create_completion("x", max_tokens=10, logits_processor=forced_tokens(llm, ids))
    assert out["choices"][0]["text"] == "ok"
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] == 2


async def test_logit_bias_through_the_api(llm):
    out = await llm.create_completion("x", max_tokens=3, temperature=0, logit_bias={"1234": 1000.0})
    assert out["choices"][0]["logprobs"] is None
    again = await llm.create_completion("x", max_tokens=3, temperature=0, logit_bias={1234: 1000.0}, logprobs=0)
    assert again["choices"][0]["logprobs"]["tokens"] == [llm._vocab.token_to_piece(1234).decode()] * 3


async def test_suffix_builds_a_fill_in_the_middle_prompt(tmp_path):
    from allama.testing.model_builder import LlamaConfig, build_llama

    path = build_llama(tmp_path / "coder.gguf", LlamaConfig(vocab="deepseek-coder"))[0]
    async with Llama(str(path), n_ctx=256, n_parallel=1) as coder:
        v = coder._vocab
        assert min(v.fim_pre, v.fim_suf, v.fim_mid) >= 0
        prompt = prompt_tokens(coder, "def f(", "):\n    pass")
        body = v.tokenize(b"def f(", False, False)
        tail = v.tokenize(b"):\n    pass", False, False)
        assert prompt[-len(tail) - 2:] == [v.fim_suf] + tail + [v.fim_mid]
        assert [v.fim_pre] + body == prompt[prompt.index(v.fim_pre):prompt.index(v.fim_suf)]
        out = await coder.create_completion("def f(", suffix="):\n    pass", max_tokens=4, temperature=0)
        assert out["choices"][0]["finish_reason"] in ("length", "stop")


async def test_a_whole_result_wakes_the_loop_once_not_per_token(llm, monkeypatch):
    from allama.engine import output_sink

    sinks = []
    original = output_sink.OutputSink.__init__

    def tracking(self, eager=True):
        original(self, eager)
        sinks.append(self)

    monkeypatch.setattr(output_sink.OutputSink, "__init__", tracking)
    out = await llm.create_completion("Wake once", max_tokens=24, temperature=0, ignore_eos=True)
    assert out["usage"]["completion_tokens"] == 24
    assert sinks[-1].wakeups <= 1
    def spaced(ids, logits):  # tokens 5 ms apart: the waiting reader wakes for each, however busy the machine
        time.sleep(0.005)
        return False

    stream = await llm.create_completion("Wake often", max_tokens=24, temperature=0, ignore_eos=True, stream=True,
                                         stopping_criteria=spaced)
    assert len([c async for c in stream]) == 24
    assert sinks[-1].wakeups >= 12  # a stream is woken as tokens arrive


async def test_invalid_utf8_from_the_model_is_dropped_streamed_or_not(llm):
    # force lone UTF-8 lead bytes (byte-fallback tokens <0xE6>): they never form a character
    lead = [t for t in range(llm.n_vocab()) if llm.detokenize([t]) == b"\xe6"]
    assert len(lead) == 1
    args = dict(max_tokens=6, temperature=0, logit_bias={lead[0]: 100.0})
    out = await llm.create_completion("Broken bytes:", **args)
    assert out["choices"][0]["text"] == "" and out["usage"]["completion_tokens"] == 6
    stream = await llm.create_completion("Broken bytes:", stream=True, **args)
    assert "".join([c["choices"][0]["text"] async for c in stream]) == ""


async def test_a_stream_that_wraps_another_frees_its_request_through_abandon(llm):
    cancelled = llm.stats().requests_cancelled
    inner = await llm.create_completion("Once upon a time", max_tokens=400, ignore_eos=True, stream=True)
    outer = AsyncStream(inner.__aiter__(), on_abandon=inner.abandon)
    async for _ in outer:
        break
    outer.abandon()  # as dropping the stream would
    with anyio.fail_after(10):
        while llm.stats().requests_cancelled == cancelled:
            await anyio.sleep(0.01)
    assert llm.stats().active == 0
