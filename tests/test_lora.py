"""LoRA adapters per request: each request decodes with the adapters it names, the engine
serves requests with different sets in turns, and KV is never shared across sets."""

from __future__ import annotations

import dataclasses

import anyio
import numpy as np
import pytest

from allama import Llama
from allama.testing.model_builder import LORA_TARGETS, build_lora

from .oracle.llama_forward import LlamaWeights, forward
from .tiny_models import GREEDY, TINY_LLAMA

pytestmark = pytest.mark.anyio

PROMPT = "The quick brown fox jumps over the lazy dog"
SIX_TOKENS = {**GREEDY, "max_tokens": 6}  # six greedy tokens
EXACT = dict(n_ctx=128, n_parallel=4, type_k=0, type_v=0, flash_attn=False)


@pytest.fixture(scope="module")
def adapters(models_dir):
    return (build_lora(models_dir / "lora-a.gguf", TINY_LLAMA, seed=1),
            build_lora(models_dir / "lora-b.gguf", TINY_LLAMA, seed=2, alpha=16.0))


@pytest.fixture(scope="module")
def llm_options(adapters):
    return dict(lora_adapters={"a": str(adapters[0]), "b": str(adapters[1])}, **EXACT)


def oracle_greedy(weights: LlamaWeights, tokens: list[int], n: int) -> list[int]:
    tokens = list(tokens)
    out = []
    for _ in range(n):
        out.append(int(np.argmax(forward(weights, tokens)[-1])))
        tokens.append(out[-1])
    return out


def merged(weights: LlamaWeights, adapter_path, scale: float, rank: int = 4) -> LlamaWeights:
    import gguf

    reader = gguf.GGUFReader(adapter_path)
    alpha = float(reader.fields["adapter.lora.alpha"].contents())
    lora = {t.name: np.asarray(t.data, dtype=np.float64) for t in reader.tensors}
    tensors = dict(weights.tensors)
    for i in range(TINY_LLAMA.n_layer):
        for name in LORA_TARGETS:
            key = f"blk.{i}.{name}.weight"
            tensors[key] = tensors[key] + scale * alpha / rank * (lora[key + ".lora_b"] @ lora[key + ".lora_a"])
    return dataclasses.replace(weights, tensors=tensors)


async def test_a_request_decodes_with_the_adapters_it_names(llm, llama_f32_path, adapters):
    tokens = llm.tokenize(PROMPT.encode())
    out = await llm.create_completion(tokens, lora={"a": 0.5, "b": 0.25}, **SIX_TOKENS)
    weights = merged(merged(LlamaWeights.from_gguf(llama_f32_path), adapters[0], 0.5), adapters[1], 0.25)
    expected = oracle_greedy(weights, tokens, 6)
    assert llm.tokenize(out["choices"][0]["text"].encode(), add_bos=False) == expected or \
        out["choices"][0]["text"] == llm.detokenize(expected).decode()
    base = await llm.create_completion(tokens, **SIX_TOKENS)
    assert base["choices"][0]["text"] == llm.detokenize(oracle_greedy(LlamaWeights.from_gguf(llama_f32_path),
                                                                     tokens, 6)).decode()
    assert base["choices"][0]["text"] != out["choices"][0]["text"]


async def test_concurrent_requests_with_different_sets_each_get_their_own_output(llm):
    sets = [None, {"a": 1.0}, {"b": 0.7}, {"a": 0.3, "b": 0.3}, {}, {"a": 1.0}]
    prompts = [PROMPT, "Once upon a time", PROMPT, "def fib(n):", PROMPT, "Once upon a time"]
    alone = [(await llm.create_completion(p, lora=s, **SIX_TOKENS))["choices"][0]["text"]
             for p, s in zip(prompts, sets)]
    together: list[str] = [""] * len(sets)

    async def run(i: int) -> None:
        together[i] = (await llm.create_completion(prompts[i], lora=sets[i], **SIX_TOKENS))["choices"][0]["text"]

    async with anyio.create_task_group() as tg:
        for i in range(len(sets)):
            tg.start_soon(run, i)
    assert together == alone
    assert len({alone[0], alone[2]}) == 2  # the adapter changes the same prompt's reply


async def test_kv_is_reused_within_a_set_and_never_across_sets(llama_f32_path, adapters):
    async with Llama(str(llama_f32_path), lora_adapters={"a": str(adapters[0]), "b": str(adapters[1])},
                     **EXACT) as llm:
        await llm.create_completion(PROMPT, lora={"a": 1.0}, **SIX_TOKENS)
        other = await llm.create_completion(PROMPT, lora={"b": 1.0}, **SIX_TOKENS)
        assert other["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        again = await llm.create_completion(PROMPT, lora={"a": 1.0}, **SIX_TOKENS)
        assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == again["usage"]["prompt_tokens"] - 1


async def test_lora_path_is_the_default_set_and_lora_overrides_it(llama_f32_path, adapters, llm):
    async with Llama(str(llama_f32_path), lora_path=str(adapters[0]), lora_scale=0.5, **EXACT) as default:
        assert default.lora_adapters == {str(adapters[0]): 0.5}
        with_default = await default.create_completion(PROMPT, **SIX_TOKENS)
        none = await default.create_completion(PROMPT, lora={}, **SIX_TOKENS)
    with_a = await llm.create_completion(PROMPT, lora={"a": 0.5}, **SIX_TOKENS)
    assert with_default["choices"][0]["text"] == with_a["choices"][0]["text"]
    assert none["choices"][0]["text"] == (await llm.create_completion(PROMPT, **SIX_TOKENS))["choices"][0]["text"]
    assert llm.lora_adapters == {"a": 0.0, "b": 0.0}


async def test_chat_takes_lora_too(llm):
    messages = [{"role": "user", "content": "Hi"}]
    a = await llm.create_chat_completion(messages, lora={"a": 1.0}, max_tokens=4, temperature=0.0)
    b = await llm.create_chat_completion(messages, lora={"a": 1.0}, max_tokens=4, temperature=0.0)
    assert a["choices"][0]["message"] == b["choices"][0]["message"]


@pytest.mark.parametrize("lora, message", [({"missing": 1.0}, "unknown LoRA adapter"),
                                           ({"a": "high"}, "must be a number")])
async def test_bad_lora_selections_raise(llm, lora, message):
    with pytest.raises(ValueError, match=message):
        await llm.create_completion(PROMPT, lora=lora, **SIX_TOKENS)


def test_a_missing_adapter_file_raises(llama_f32_path, tmp_path):
    with pytest.raises(FileNotFoundError):
        Llama(str(llama_f32_path), lora_adapters={"x": str(tmp_path / "missing.gguf")}, n_ctx=64)
