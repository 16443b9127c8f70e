"""Bad Llama(...) arguments: a ValueError or TypeError at construction, never an abort, a
hang, or a model that fails at its first request."""

from __future__ import annotations

import math

import pytest

from . import scenarios
from .runner import expect_raises, expect_returns, run_case

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("kwargs, expected", [
    pytest.param({"n_ctx": -1}, ("ValueError", "n_ctx"), id="n_ctx-negative"),
    pytest.param({"n_ctx": 2**31}, ("ValueError",), id="n_ctx-over-uint32"),
    pytest.param({"n_ctx": "512"}, ("TypeError",), id="n_ctx-str"),
    pytest.param({"n_batch": 0}, ("ValueError", "n_batch"), id="n_batch-0"),
    pytest.param({"n_batch": -1}, ("ValueError", "n_batch"), id="n_batch-negative"),
    pytest.param({"n_ubatch": 0}, ("ValueError", "n_ubatch"), id="n_ubatch-0"),
    pytest.param({"n_ubatch": -8}, ("ValueError", "n_ubatch"), id="n_ubatch-negative"),
    pytest.param({"n_parallel": 0}, ("ValueError", "n_parallel"), id="n_parallel-0"),
    pytest.param({"n_parallel": -2}, ("ValueError", "n_parallel"), id="n_parallel-negative"),
    pytest.param({"n_parallel": 100000}, ("ValueError", "n_parallel"), id="n_parallel-huge"),
    pytest.param({"n_threads": -1}, ("ValueError", "n_threads"), id="n_threads-negative"),
    pytest.param({"n_threads_batch": -3}, ("ValueError", "n_threads"), id="n_threads_batch-negative"),
    pytest.param({"kv_size": 0}, ("ValueError", "kv_size"), id="kv_size-0"),
    pytest.param({"kv_size": -1}, ("ValueError", "kv_size"), id="kv_size-negative"),
    pytest.param({"max_queue": -1}, ("ValueError", "max_queue"), id="max_queue-negative"),
    pytest.param({"n_keep": -1}, ("ValueError", "n_keep"), id="n_keep-negative"),
    pytest.param({"pooling_type": 99}, ("ValueError", "pooling_type"), id="pooling_type-unknown"),
    pytest.param({"attention_type": 99}, ("ValueError", "attention_type"), id="attention_type-unknown"),
    pytest.param({"rope_scaling_type": 99}, ("ValueError", "rope_scaling_type"), id="rope_scaling_type-unknown"),
    pytest.param({"type_k": 999}, ("ValueError", "type_k"), id="type_k-unknown"),
    pytest.param({"type_v": -5}, ("ValueError", "type_v"), id="type_v-negative"),
    pytest.param({"split_mode": 7}, ("ValueError", "split_mode"), id="split_mode-unknown"),
    pytest.param({"tensor_split": [NAN]}, ("ValueError", "tensor_split"), id="tensor_split-nan"),
    pytest.param({"tensor_split": [1.0] * 1000}, ("ValueError", "tensor_split"), id="tensor_split-too-long"),
    pytest.param({"rope_freq_base": NAN}, ("ValueError", "rope_freq_base"), id="rope_freq_base-nan"),
    pytest.param({"rope_freq_scale": -1.0}, ("ValueError", "rope_freq_scale"), id="rope_freq_scale-negative"),
    pytest.param({"yarn_ext_factor": INF}, ("ValueError", "yarn"), id="yarn_ext_factor-inf"),
    pytest.param({"seed": "x"}, ("TypeError", "seed"), id="seed-str"),
    pytest.param({"seed": 1.5}, ("TypeError", "seed"), id="seed-float"),
    pytest.param({"kv_overrides": {"llama.context_length": [1, 2]}}, ("TypeError",), id="kv_overrides-list-value"),
    pytest.param({"kv_overrides": "llama.block_count=int:2"}, ("TypeError", "kv_overrides"), id="kv_overrides-str"),
    pytest.param({"kv_size": 1 << 32}, ("ValueError", "kv_size"), id="kv_size-over-int32"),
    pytest.param({"last_n_tokens_size": -2}, ("ValueError", "last_n_tokens_size"), id="last_n_tokens_size-minus-2"),
    pytest.param({"lora_scale": float("nan")}, ("ValueError", "lora_scale"), id="lora_scale-nan"),
    pytest.param({"lora_path": "/nonexistent/adapter.gguf"}, ("FileNotFoundError",), id="lora_path-missing"),
    pytest.param({"lora_adapters": {"a": 5}}, ("TypeError",), id="lora_adapters-int-path"),
    pytest.param({"draft_model": 5}, ("TypeError", "draft_model"), id="draft_model-int"),
    pytest.param({"tokenizer": "gpt2"}, ("TypeError", "tokenizer"), id="tokenizer-str"),
    pytest.param({"rpc_servers": "127.0.0.1:1", "n_gpu_layers": -1}, ("ModelLoadError", "127.0.0.1:1"),
                 id="rpc_servers-nobody-listening"),
    pytest.param({"rpc_servers": "localhost"}, ("ValueError", "host:port"), id="rpc_servers-no-port"),
    pytest.param({"rpc_servers": ["h:1", 2]}, ("TypeError", "rpc_servers"), id="rpc_servers-int-in-list"),
])
def test_a_bad_constructor_argument_is_a_clear_error(chat_model, kwargs, expected):
    expect_raises(run_case(scenarios.load, chat_model, kwargs), *expected)


@pytest.mark.parametrize("kwargs", [
    pytest.param({"n_ctx": 0}, id="n_ctx-0-means-the-models"),
    pytest.param({"n_threads": 0}, id="n_threads-0-means-default"),
    pytest.param({"seed": -1}, id="seed-negative"),
    pytest.param({"seed": 2**70}, id="seed-beyond-64-bits"),
    pytest.param({"n_ubatch": 4096}, id="n_ubatch-above-n_batch"),
    pytest.param({"n_gpu_layers": -7}, id="n_gpu_layers-negative-means-all"),
    # requests that outgrow a small cache fail with KVCacheFullError (tests/engine covers it)
    pytest.param({"kv_size": 16}, id="kv_size-below-n_ctx"),
    # llama.cpp ignores an override of the wrong type for its key, with a warning
    pytest.param({"kv_overrides": {"llama.block_count": "many"}}, id="kv_overrides-wrong-type-is-ignored"),
    pytest.param({"chat_format": "no-such-format"}, id="chat_format-is-looked-up-at-chat-time"),
])
def test_documented_argument_values_are_accepted(chat_model, kwargs):
    assert expect_returns(run_case(scenarios.load, chat_model, kwargs))["finish_reasons"] == ["length"]


@pytest.mark.parametrize("model_path, expected", [
    pytest.param(5, ("TypeError",), id="int"),
    pytest.param(None, ("TypeError",), id="none"),
    pytest.param(b"/some/bytes.gguf", ("TypeError",), id="bytes"),
])
def test_a_model_path_of_the_wrong_type_is_a_type_error(model_path, expected):
    expect_raises(run_case(scenarios.load, model_path, {}), *expected)
