"""llama-cpp-python's smaller Llama conveniences, on both twins: logits_to_logprobs,
longest_token_prefix, pooling_type, pickling, create_chat_completion_openai_v1 (blocking)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from allama import Llama
from allama import sync


def test_logits_to_logprobs_is_a_log_softmax():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]], dtype=np.float32)
    out = Llama.logits_to_logprobs(logits)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.exp(out).sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out[0], np.log(np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum()), rtol=1e-5)
    assert np.isfinite(out[1]).all() and abs(out[1][0] - np.log(0.5)) < 1e-5  # no overflow
    np.testing.assert_allclose(np.exp(Llama.logits_to_logprobs(logits, axis=0)).sum(axis=0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(sync.Llama.logits_to_logprobs(logits), out)  # the twin's is the same function


def test_longest_token_prefix():
    assert Llama.longest_token_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert Llama.longest_token_prefix([], [1]) == 0
    assert sync.Llama.longest_token_prefix([7, 8], [7, 8]) == 2


def test_pooling_type_of_an_embedding_model(bert_path, llama_f32_path):
    with sync.Llama(str(bert_path), n_ctx=128, embedding=True) as llm:
        assert llm.pooling_type() == 1  # the BERT fixture's mean pooling
    with sync.Llama(str(llama_f32_path), n_ctx=128, pooling_type=3) as llm:
        assert llm.pooling_type() == 3


def test_a_pickled_llama_loads_the_model_again(llama_f32_path):
    with sync.Llama(str(llama_f32_path), n_ctx=128, seed=5) as llm:
        expected = llm.create_completion("Hello", max_tokens=4, temperature=0.0)["choices"][0]["text"]
        copy = pickle.loads(pickle.dumps(llm))
    with copy:
        assert copy.n_ctx() == 128
        assert copy.create_completion("Hello", max_tokens=4, temperature=0.0)["choices"][0]["text"] == expected
    llm_async = Llama(str(llama_f32_path), n_ctx=96, n_parallel=2)
    again = pickle.loads(pickle.dumps(llm_async))
    assert again.n_ctx() == 96 and again is not llm_async
    again.close()
    llm_async.close()


def test_blocking_openai_v1_chat(llama_f32_path):
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    with sync.Llama(str(llama_f32_path), n_ctx=128) as llm:
        messages = [{"role": "user", "content": "Hi"}]
        whole = llm.create_chat_completion_openai_v1(messages=messages, max_tokens=3, temperature=0.0)
        assert isinstance(whole, ChatCompletion)
        chunks = list(llm.create_chat_completion_openai_v1(messages=messages, max_tokens=3, temperature=0.0,
                                                           stream=True))
        assert chunks and all(isinstance(c, ChatCompletionChunk) for c in chunks)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
