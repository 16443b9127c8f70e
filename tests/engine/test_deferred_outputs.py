"""DeferredOutputs (overlap_outputs): a step's tokens become text on the output thread while
the next step decodes. Outputs, finishes and the KV a stop string leaves are the serial path's."""

from __future__ import annotations

import anyio
import pytest

from allama import Llama
from allama.engine import deferred_outputs

from ..tiny_models import GREEDY

pytestmark = pytest.mark.anyio

PROMPTS = ["Once upon a time", "The quick brown fox", "In a hole in the ground there lived", "def main():"]


@pytest.fixture(autouse=True)
def defer_from_one_row(monkeypatch):
    """Steps of fewer than MIN_ROWS rows defer nothing: here even a lone request's do."""
    monkeypatch.setattr(deferred_outputs, "MIN_ROWS", 1)


@pytest.fixture(scope="module")
def pair(llama_f32_path):
    """The same model with the output thread on and off (both forced: 2 threads on 2 CPUs is off by default)."""
    options = dict(n_ctx=256, n_parallel=4, n_keep=4, n_batch=64, n_threads=2, n_threads_batch=2)
    on = Llama(str(llama_f32_path), overlap_outputs=True, **options)
    off = Llama(str(llama_f32_path), overlap_outputs=False, **options)
    assert on._scheduler.deferred.enabled and not off._scheduler.deferred.enabled
    yield on, off
    on.close()
    off.close()


def deferred_stops(llm: Llama, monkeypatch) -> list[str]:
    """Records the finishes that deferred tokens gave (on the output thread)."""
    outputs = llm._scheduler.outputs
    original = outputs.deferred_output
    finishes: list[str] = []

    def recording(seq, token):
        out, finish = original(seq, token)
        if finish is not None:
            finishes.append(finish)
        return out, finish

    monkeypatch.setattr(outputs, "deferred_output", recording)
    return finishes


def kv_matches_kept_tokens(llm: Llama) -> bool:
    """Every kept sequence's KV ends where its recorded tokens end (nothing decoded beyond)."""
    ctx = llm._scheduler.ctx
    kept = llm._scheduler.prefix_cache.kept
    return bool(kept) and all(ctx.seq_pos_max(seq_id) == len(tokens) - 1 for seq_id, tokens in kept.items())


async def text_and_stop(llm: Llama, prompt: str, max_tokens: int) -> tuple[str, str]:
    """The greedy text of `prompt` (EOS ignored), and a stop string from its second half."""
    out = await llm.create_completion(prompt, max_tokens=max_tokens, ignore_eos=True, **GREEDY)
    text = out["choices"][0]["text"]
    return text, text[len(text) // 2:].strip()[:2]


async def streamed(llm: Llama, prompt: str, **options) -> tuple[str, str]:
    stream = await llm.create_completion(prompt, stream=True, **{**GREEDY, **options})
    text, finish = "", None
    async for chunk in stream:
        text += chunk["choices"][0]["text"]
        finish = chunk["choices"][0]["finish_reason"] or finish
    return text, finish


async def concurrently(llm: Llama, calls) -> list:
    results: list = [None] * len(calls)

    async def run(i, call):
        results[i] = await call()

    async with anyio.create_task_group() as tg:
        for i, call in enumerate(calls):
            tg.start_soon(run, i, call)
    return results


async def test_concurrent_streams_give_the_serial_paths_text(pair):
    on, off = pair
    expected = [await streamed(off, p, max_tokens=24, ignore_eos=True) for p in PROMPTS]
    got = await concurrently(on, [lambda p=p: streamed(on, p, max_tokens=24, ignore_eos=True) for p in PROMPTS])
    assert got == expected
    assert all(finish == "length" for _, finish in got)


async def test_a_stop_string_in_a_deferred_token_ends_the_text_where_the_serial_path_does(pair, monkeypatch):
    on, off = pair
    stops = deferred_stops(on, monkeypatch)
    cases = []
    for prompt in PROMPTS:
        cases.append((prompt, *await text_and_stop(off, prompt, 24)))
    for llm in pair:
        results = await concurrently(llm, [lambda p=p, s=s: streamed(llm, p, max_tokens=24, stop=[s])
                                           for p, _, s in cases])
        for (prompt, full, stop), (text, finish) in zip(cases, results):
            assert (text, finish) == (full[:full.index(stop)], "stop"), (prompt, stop)
    assert len(stops) == len(cases)  # each stop string was found on the output thread


async def test_the_token_decoded_after_a_stop_string_leaves_the_kept_kv(pair):
    """The token whose text held the stop string went into the next batch before its text was
    known; once the sequence ends, it is dropped, so the kept prefix is exactly its tokens and
    a request that reuses it continues as the serial path does."""
    on, off = pair
    prompt = "The river ran past the mill and"
    _, stop = await text_and_stop(off, prompt, 16)
    replies = []
    for llm in pair:
        first = await llm.create_completion(prompt, max_tokens=16, stop=[stop], **GREEDY)
        assert first["choices"][0]["finish_reason"] == "stop"
        assert kv_matches_kept_tokens(llm)
        follow_up = prompt + first["choices"][0]["text"] + " and then"
        out = await llm.create_completion(follow_up, max_tokens=8, ignore_eos=True, **GREEDY)
        assert out["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
        replies.append(out["choices"][0]["text"])
    assert replies[0] == replies[1]


async def test_a_session_turn_ended_by_a_stop_string_continues_as_the_serial_path(pair):
    on, off = pair
    prompt = "Tell me a story about a cat"
    _, stop = await text_and_stop(off, prompt, 16)
    seconds = []
    for llm in pair:
        async with llm.session() as session:
            first = await session.create_completion(prompt, max_tokens=16, stop=[stop], **GREEDY)
            history = session.tokens
            follow_up = history + llm.tokenize(b" and the dog", add_bos=False)
            second = await session.create_completion(follow_up, max_tokens=8, ignore_eos=True, **GREEDY)
        assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == len(history)
        seconds.append((first["choices"][0]["text"], history, second["choices"][0]["text"]))
    assert seconds[0] == seconds[1]


async def test_a_tokenizer_failing_on_the_output_thread_fails_only_its_request(llama_f32_path):
    from allama import LlamaTokenizer

    options = dict(n_ctx=256, n_parallel=4, n_threads=2, overlap_outputs=True)
    plain = Llama(str(llama_f32_path), **options)
    try:
        texts = [(await plain.create_completion(p, max_tokens=32, ignore_eos=True, **GREEDY))["choices"][0]["text"]
                 for p in PROMPTS]
        # a letter in some of the greedy texts but not all: detokenizing it fails those requests
        letter = next(c for c in sorted(set("".join(texts)))
                      if c.isascii() and c.isalpha() and 0 < sum(c in t for t in texts) < len(texts))

        class FailingOnLetter:
            def __init__(self) -> None:
                self.inner = LlamaTokenizer(plain)

            def tokenize(self, text, add_bos=True, special=True):
                return self.inner.tokenize(text, add_bos, special)

            def detokenize(self, tokens, prev_tokens=None, special=False):
                piece = self.inner.detokenize(tokens, prev_tokens=prev_tokens, special=special)
                if letter.encode() in piece:
                    raise RuntimeError("tokenizer failed")
                return piece

        llm = Llama(str(llama_f32_path), tokenizer=FailingOnLetter(), **options)
        try:
            async def one(i):
                try:
                    out = await llm.create_completion(PROMPTS[i], max_tokens=32, ignore_eos=True, **GREEDY)
                except RuntimeError as exc:
                    return str(exc)
                return out["choices"][0]["text"]

            results = await concurrently(llm, [lambda i=i: one(i) for i in range(len(PROMPTS))])
            for text, result in zip(texts, results):
                assert result == ("tokenizer failed" if letter in text else text)
            assert llm.stats().active == 0
        finally:
            llm.close()
    finally:
        plain.close()


async def test_overlap_switched_on_after_the_model_was_made_defers_as_the_default_does(pair):
    """A scheduler made without overlap, switched on (as benchmarks/engine_share.py does
    between rounds), starts its output thread at the first hand-over."""
    on, off = pair
    prompt = PROMPTS[1]
    full, stop = await text_and_stop(off, prompt, 16)
    off._scheduler.deferred.enabled = True
    try:
        assert await streamed(off, prompt, max_tokens=16, stop=[stop]) == (full[:full.index(stop)], "stop")
        assert kv_matches_kept_tokens(off)
    finally:
        off._scheduler.deferred.enabled = False


async def test_a_step_of_fewer_rows_than_min_rows_defers_nothing(pair, monkeypatch):
    on, off = pair
    monkeypatch.setattr(deferred_outputs, "MIN_ROWS", 4)
    deferred: list[int] = []
    original = on._scheduler.deferred.defer
    monkeypatch.setattr(on._scheduler.deferred, "defer", lambda seq, token: deferred.append(token) or original(seq, token))
    await streamed(on, PROMPTS[0], max_tokens=8, ignore_eos=True)
    assert deferred == []
    # submitted back to back (a stream is submitted at its await), then read together: the
    # four are admitted at once and generate in the same steps
    streams = [await on.create_completion(p, stream=True, max_tokens=32, ignore_eos=True, **GREEDY)
               for p in PROMPTS]

    async def read(stream) -> None:
        async for _chunk in stream:
            pass

    async with anyio.create_task_group() as tg:
        for stream in streams:
            tg.start_soon(read, stream)
    assert deferred  # four rows a step: those steps defer
