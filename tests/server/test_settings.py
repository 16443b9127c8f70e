"""Settings as llama-cpp-python's server takes them: every ModelSettings field it has, its
CLI spellings (space-separated lists, t/f/y/n booleans), config files that refuse unknown
keys, and what each model setting does when the model loads."""

from __future__ import annotations

import json

import pytest
import yaml
from pydantic import ValidationError

from allama import LlamaDiskCache, LlamaPromptLookupDecoding, LlamaRAMCache
from allama.llama import Llama
from allama.server import ConfigFileSettings
from allama.server.cli import settings_from_args
from allama.server.model_registry import load_model
from allama.server.settings import ModelSettings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LLAMA_CPP_PYTHON_MODEL_FIELDS = {
    "mul_mat_q": False, "logits_all": False, "cache": True, "cache_type": "disk", "cache_size": 1 << 20,
    "hf_tokenizer_config_path": "tokenizer_config.json", "hf_pretrained_model_name_or_path": "org/tokenizer",
    "hf_model_repo_id": "org/repo", "draft_model": "prompt-lookup-decoding", "draft_model_num_pred_tokens": 4,
}


def test_every_llama_cpp_python_model_field_is_accepted():
    settings = ModelSettings(model="m.gguf", **LLAMA_CPP_PYTHON_MODEL_FIELDS)
    for name, value in LLAMA_CPP_PYTHON_MODEL_FIELDS.items():
        assert getattr(settings, name) == value
    defaults = ModelSettings(model="m.gguf")
    assert (defaults.mul_mat_q, defaults.logits_all, defaults.cache, defaults.cache_type, defaults.cache_size,
            defaults.draft_model, defaults.draft_model_num_pred_tokens) == (True, True, False, "ram", 2 << 30,
                                                                            None, 10)


def test_mul_mat_q_and_logits_all_are_no_ops():
    kwargs = ModelSettings(model="m.gguf", mul_mat_q=False, logits_all=False).llama_kwargs()
    assert "mul_mat_q" not in kwargs and "logits_all" not in kwargs


def test_an_unknown_draft_model_is_refused():
    with pytest.raises(ValidationError, match="prompt-lookup-decoding"):
        ModelSettings(model="m.gguf", draft_model="some-other-model.gguf")


def test_list_flags_take_space_separated_items_and_booleans_take_any_spelling():
    settings = settings_from_args(["--model", "m.gguf", "--tensor_split", "0.5", "0.5", "--flash_attn", "T",
                                   "--use_mmap", "n", "--use_mlock", "YES", "--cache", "y", "--vocab_only", "f",
                                   "--kv_overrides", "a=int:1", "b=bool:true", "--numa", "2",
                                   "--cache_type", "disk", "--draft_model_num_pred_tokens", "3"])
    assert settings.tensor_split == [0.5, 0.5]
    assert (settings.flash_attn, settings.use_mmap, settings.use_mlock, settings.cache, settings.vocab_only) == \
        (True, False, True, True, False)
    assert settings.kv_overrides == ["a=int:1", "b=bool:true"]
    assert settings.numa == 2 and settings.cache_type == "disk" and settings.draft_model_num_pred_tokens == 3
    assert settings_from_args(["--model", "m.gguf", "--tensor_split", "0.25,0.75"]).tensor_split == [0.25, 0.75]
    for text, value in (("1", True), ("0", False), ("On", True), ("off", False), ("No", False), ("t", True)):
        assert settings_from_args(["--model", "m.gguf", "--embedding", text]).embedding is value
    with pytest.raises(SystemExit):
        settings_from_args(["--model", "m.gguf", "--embedding", "maybe"])


def test_a_config_file_with_an_unknown_key_names_it(tmp_path):
    top = tmp_path / "top.yaml"
    top.write_text(yaml.safe_dump({"prot": 8000, "models": [{"model": "a.gguf"}]}))
    with pytest.raises(ValidationError, match="unknown setting 'prot'"):
        ConfigFileSettings.from_file(top)
    per_model = tmp_path / "model.json"
    per_model.write_text(json.dumps({"models": [{"model": "a.gguf"}, {"model": "b.gguf", "n_ctxx": 64}]}))
    with pytest.raises(ValidationError, match=r"models\[1\]: unknown setting 'n_ctxx'"):
        settings_from_args(["--config", str(per_model)])
    aliases = tmp_path / "aliases.json"  # a field's alias (mmproj) is a known key
    aliases.write_text(json.dumps({"models": [{"model": "a.gguf", "mmproj": "p.gguf"}]}))
    assert ConfigFileSettings.from_file(aliases).models[0].clip_model_path == "p.gguf"


# ------------------------------------------------------------------ what the model settings do

@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_cache_settings_give_the_model_a_prompt_cache(llama_f32_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the disk cache lives in ./.cache/llama_cache, as llama-cpp-python's
    ram = await load_model(ModelSettings(model=str(llama_f32_path), n_ctx=256, cache=True, cache_size=1 << 20))
    disk = await load_model(ModelSettings(model=str(llama_f32_path), n_ctx=256, cache=True, cache_type="disk"))
    plain = await load_model(ModelSettings(model=str(llama_f32_path), n_ctx=256, cache_size=1 << 20))
    try:
        assert isinstance(ram.cache, LlamaRAMCache) and ram.cache.capacity_bytes == 1 << 20
        assert isinstance(disk.cache, LlamaDiskCache) and disk.cache.capacity_bytes == 2 << 30
        assert (tmp_path / ".cache" / "llama_cache").is_dir()
        assert plain.cache is None
    finally:
        for llm in (ram, disk, plain):
            await llm.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_draft_model_is_prompt_lookup_decoding_with_its_token_count(llama_f32_path):
    llm = await load_model(ModelSettings(model=str(llama_f32_path), n_ctx=256, draft_model="prompt-lookup-decoding",
                                         draft_model_num_pred_tokens=3))
    try:
        assert isinstance(llm.draft_model, LlamaPromptLookupDecoding)
        assert llm.draft_model.num_pred_tokens == 3
        out = await llm.create_completion("a b a b a b", max_tokens=8, temperature=0.0)
        assert out["usage"]["completion_tokens"] >= 1
    finally:
        await llm.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_hf_model_repo_id_loads_model_from_the_hub(llama_f32_path, monkeypatch):
    calls = []

    async def from_pretrained(cls, repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs["n_ctx"]))
        return await Llama.load(llama_f32_path, **kwargs)

    monkeypatch.setattr(Llama, "from_pretrained", classmethod(from_pretrained))
    llm = await load_model(ModelSettings(model="*q8_0.gguf", hf_model_repo_id="org/repo", n_ctx=128))
    try:
        assert calls == [("org/repo", "*q8_0.gguf", 128)]
    finally:
        await llm.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_hf_tokenizer_config_path_formats_chat_with_its_template(llama_f32_path, tmp_path):
    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({
        "bos_token": {"content": "<s>"}, "eos_token": "</s>",
        "chat_template": "{% for m in messages %}{% if m.content %}[{{ m.role }}] {{ m.content }}\n{% endif %}"
                         "{% endfor %}[assistant]"}))
    for chat_format in (None, "hf-tokenizer-config"):
        llm = await load_model(ModelSettings(model=str(llama_f32_path), n_ctx=256, chat_format=chat_format,
                                             hf_tokenizer_config_path=str(config)))
        try:
            out = await llm.create_chat_completion([{"role": "user", "content": "hello there"}], max_tokens=1)
            expected = llm.tokenize(b"[user] hello there\n[assistant]", add_bos=True, special=True)
            assert out["usage"]["prompt_tokens"] == len(expected)
        finally:
            await llm.aclose()
    with pytest.raises(ValidationError, match="hf_tokenizer_config_path"):
        ModelSettings(model="m.gguf", chat_format="hf-tokenizer-config")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_hf_pretrained_model_name_or_path_tokenizes_with_that_tokenizer(llama_f32_path, tmp_path):
    pytest.importorskip("transformers")
    from tests.hf_tokenizers import build_byte_level_bpe

    directory = build_byte_level_bpe(tmp_path / "tokenizer")
    llm = await load_model(ModelSettings(model=str(llama_f32_path), n_ctx=256,
                                         hf_pretrained_model_name_or_path=str(directory)))
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(directory)
        assert llm.tokenize(b"Hello world", add_bos=False) == hf.encode("Hello world", add_special_tokens=False)
    finally:
        await llm.aclose()


def test_hf_pretrained_model_name_or_path_without_transformers_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match="transformers"):
        ModelSettings(model="m.gguf", hf_pretrained_model_name_or_path="org/tokenizer").llama_kwargs()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_kv_size_and_n_keep_reach_the_engine(llama_f32_path):
    default = await load_model(ModelSettings(model=str(llama_f32_path), n_ctx=256, n_parallel=4, n_threads=1))
    roomy = await load_model(ModelSettings(model=str(llama_f32_path), n_ctx=256, n_parallel=4, kv_size=1024,
                                           n_keep=1, n_threads=1))
    try:
        assert default._scheduler.ctx.n_ctx == 256  # llama-cpp-python's memory for n_ctx=256
        assert roomy._scheduler.ctx.n_ctx == 1024 and roomy._scheduler.config.n_keep == 1
    finally:
        await default.aclose()
        await roomy.aclose()
