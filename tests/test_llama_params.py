"""LlamaParams: Llama(...)'s arguments checked once, and the native parameters made from them
for the model, the engine's context, the engine, and the blocking twin's single-sequence context."""

from __future__ import annotations

import inspect
import os

import pytest

from allama import Llama
from allama.llama_params import LlamaParams, default_threads


def arguments(**given) -> dict:
    """Llama(...)'s arguments with their defaults, as the constructor hands them over."""
    bound = inspect.signature(Llama.__init__).bind(None, "model.gguf", **given)
    bound.apply_defaults()
    args = dict(bound.arguments)
    del args["self"]
    return args | args.pop("kwargs")


def test_threads_default_to_half_the_cpus_for_generation_and_all_for_prompts():
    cpu = os.cpu_count() or 1
    assert default_threads(None, None) == (max(cpu // 2, 1), cpu)
    assert default_threads(3, 0) == (3, cpu)  # 0: the default, as None
    params = LlamaParams(arguments(n_threads=5, n_threads_batch=7))
    assert (params.n_threads, params.n_threads_batch) == (5, 7)


def test_the_engine_context_takes_the_request_window_or_kv_size():
    params = LlamaParams(arguments(n_batch=64, n_ubatch=128, flash_attn=True, type_k=1))
    cp = params.context(256)
    assert (cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.flash_attn_type, cp.type_k) == (256, 64, 64, 1, 1)
    assert cp.embeddings is False  # embeddings have a context of their own
    assert LlamaParams(arguments(kv_size=1000)).context(256).n_ctx == 1000


def test_the_engine_keeps_n_parallel_sequences_by_default():
    config = LlamaParams(arguments(n_parallel=3, n_batch=32)).engine(128)
    assert (config.n_ctx, config.n_parallel, config.n_keep, config.embed_max_tokens) == (128, 3, 3, 32)
    assert LlamaParams(arguments(n_keep=0)).engine(128).n_keep == 0


def test_outputs_overlap_the_next_decode_where_the_decode_leaves_a_cpu_free(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert LlamaParams(arguments()).engine(128).overlap_outputs is True  # 2 generation threads of 4 CPUs
    assert LlamaParams(arguments(n_threads=4)).engine(128).overlap_outputs is False
    assert LlamaParams(arguments(n_threads=4, overlap_outputs=True)).engine(128).overlap_outputs is True
    assert LlamaParams(arguments(n_threads=1, overlap_outputs=False)).engine(128).overlap_outputs is False
    monkeypatch.setattr("allama._native.supports_gpu_offload", lambda: True)
    assert LlamaParams(arguments(n_threads=4, n_gpu_layers=-1)).engine(128).overlap_outputs is True


def test_the_model_is_mapped_unless_a_lora_path_is_merged():
    assert LlamaParams(arguments()).model().use_mmap is True
    assert LlamaParams(arguments(lora_path="a.gguf")).model().use_mmap is False
    assert LlamaParams(arguments(rpc_servers="a:1,b:2")).model().rpc_servers == ["a:1", "b:2"]


def test_the_single_sequence_context_decodes_n_batch_at_a_time():
    cp = LlamaParams(arguments(n_batch=48, n_threads=2, n_threads_batch=3)).single_sequence_context(200)
    assert (cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_threads, cp.n_threads_batch) == (200, 48, 48, 2, 3)


@pytest.mark.parametrize("given, error, message", [
    ({"n_ctx": -1}, ValueError, "n_ctx"),
    ({"n_batch": 0}, ValueError, "n_batch"),
    ({"rope_freq_base": float("nan")}, ValueError, "rope_freq_base"),
    ({"tokenizer": object()}, TypeError, "tokenize"),
    ({"kv_unified": False, "kv_size": 64}, ValueError, "kv_size"),
    ({"overlap_outputs": "yes"}, TypeError, "overlap_outputs"),
])
def test_bad_arguments_are_refused_before_anything_loads(given, error, message):
    with pytest.raises(error, match=message):
        LlamaParams(arguments(**given))


def test_the_arguments_come_back_for_pickling():
    args = arguments(n_ctx=96, extra_option=1)
    assert LlamaParams(args).as_dict() == args
