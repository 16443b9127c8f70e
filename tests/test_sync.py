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
