"""Model: loading (files, splits, progress, overrides), facts and metadata."""

from __future__ import annotations

import dataclasses

import pytest

from allama import _native
from allama.errors import ClosedError, ModelLoadError
from allama.testing.model_builder import LlamaConfig, build_llama

from ..tiny_models import TINY_LLAMA


def test_model_reports_its_architecture(llama_model):
    c = TINY_LLAMA
    assert llama_model.n_embd == c.n_embd
    assert llama_model.n_layer == c.n_layer
    assert llama_model.n_head == c.n_head
    assert llama_model.n_head_kv == c.n_head_kv
    assert llama_model.n_ctx_train == c.n_ctx_train
    assert not llama_model.has_encoder and llama_model.has_decoder
    assert not llama_model.is_recurrent and not llama_model.is_hybrid
    expected = 2 * 32000 * c.n_embd + c.n_layer * (
        2 * c.n_embd * c.n_embd + 2 * c.n_embd * c.head_dim * c.n_head_kv + 3 * c.n_embd * c.n_ff + 2 * c.n_embd
    ) + c.n_embd
    assert llama_model.n_params == expected
    assert llama_model.size == expected * 4  # F32
    assert llama_model.description.startswith("llama")


def test_metadata_is_a_dict_of_strings(llama_model):
    meta = llama_model.metadata
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == str(TINY_LLAMA.n_layer)
    assert meta["tokenizer.ggml.model"] == "llama"


def test_bert_model_facts(bert_path):
    model = _native.Model.load(str(bert_path))
    assert model.metadata["general.architecture"] == "bert"
    assert model.metadata["bert.pooling_type"] == "1"
    assert model.n_embd == 64
    # has_encoder is about encoder-decoder models (T5); BERT runs as a decoder without a KV cache.
    assert not model.has_encoder


def test_chat_templates_default_and_named(tmp_path):
    template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
    path = build_llama(tmp_path / "chat.gguf", dataclasses.replace(TINY_LLAMA, chat_template=template))[0]
    model = _native.Model.load(str(path))
    assert model.chat_template() == template
    assert model.chat_template("tool_use") is None
    assert model.chat_templates == {"default": template}


def test_model_without_template_has_none(llama_model):
    assert llama_model.chat_template() is None
    assert llama_model.chat_templates == {}


def test_progress_callback_sees_the_load_finish(llama_f32_path):
    seen: list[float] = []
    _native.Model.load(str(llama_f32_path), None, lambda p: seen.append(p) or True)
    assert seen and seen[-1] == pytest.approx(1.0)
    assert all(0.0 <= p <= 1.0 for p in seen)


def test_progress_callback_returning_false_cancels(llama_f32_path):
    with pytest.raises(ModelLoadError, match="cancelled"):
        _native.Model.load(str(llama_f32_path), None, lambda p: False)


def test_progress_callback_exception_propagates(llama_f32_path):
    def boom(progress: float) -> bool:
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        _native.Model.load(str(llama_f32_path), None, boom)


def test_kv_overrides_change_metadata(llama_f32_path):
    params = _native.ModelParams()
    params.kv_overrides = {"llama.context_length": 1234, "tokenizer.ggml.add_bos_token": False}
    model = _native.Model.load(str(llama_f32_path), params)
    assert model.n_ctx_train == 1234
    assert _native.Vocab(model).tokenize("hi")[0] != 1


def test_vocab_only_loads_no_weights(llama_f32_path):
    params = _native.ModelParams()
    params.vocab_only = True
    model = _native.Model.load(str(llama_f32_path), params)
    assert model.vocab_only
    assert _native.Vocab(model).tokenize("hello") == [1, 22172]
    with pytest.raises(ValueError, match="vocab_only"):
        _native.Context(model)


def test_load_without_mmap_gives_the_same_model(llama_f32_path, llama_model):
    params = _native.ModelParams()
    params.use_mmap = False
    model = _native.Model.load(str(llama_f32_path), params)
    assert model.n_params == llama_model.n_params


def test_split_model_loads_from_first_shard_and_from_list(tmp_path, llama_model):
    shards = build_llama(tmp_path / "split.gguf", TINY_LLAMA, split_max_tensors=8)
    assert len(shards) > 1 and shards[0].name.endswith(f"-00001-of-{len(shards):05d}.gguf")
    by_name = _native.Model.load(str(shards[0]))
    by_list = _native.Model.load([str(p) for p in shards])
    assert by_name.n_params == by_list.n_params == llama_model.n_params


def test_model_close_keeps_contexts_working(llama_f32_path):
    from ..native_context import make_context

    model = _native.Model.load(str(llama_f32_path))
    ctx = make_context(model)
    vocab = _native.Vocab(model)
    model.close()
    assert model.closed
    with pytest.raises(ClosedError):
        model.n_params
    batch = _native.Batch(8)
    batch.add_tokens(vocab.tokenize("hi"), 0, 0)
    ctx.decode(batch)  # the context still holds the weights
    assert ctx.logits(-1).shape == (32000,)


def test_backend_facts():
    assert "CPU" in _native.system_info() or _native.devices()
    assert _native.max_parallel_sequences() >= 64
    assert _native.supports_mmap()
    assert isinstance(_native.llama_cpp_version(), str)


def test_benchmark_preset_has_about_125m_parameters():
    from allama.testing.model_builder import LLAMA_PRESETS

    c: LlamaConfig = LLAMA_PRESETS["bench"]
    per_layer = 2 * c.n_embd * c.n_embd + 2 * c.n_embd * c.head_dim * c.n_head_kv + 3 * c.n_embd * c.n_ff + 2 * c.n_embd
    total = 2 * 32000 * c.n_embd + c.n_layer * per_layer + c.n_embd
    assert 120e6 < total < 130e6
    assert c.dtype == "f16" and (c.n_layer, c.n_head, c.n_head_kv, c.n_ff) == (12, 12, 4, 2048)


@pytest.mark.slow
def test_benchmark_model_builds_and_loads(tmp_path):
    from allama.testing.model_builder import LLAMA_PRESETS

    path = build_llama(tmp_path / "bench.gguf", LLAMA_PRESETS["bench"])[0]
    model = _native.Model.load(str(path))
    assert 120e6 < model.n_params < 130e6
    assert model.metadata["general.file_type"] == "1"  # mostly F16
