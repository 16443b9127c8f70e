"""Llama(tokenizer=...): a Hugging Face tokenizer in place of the model's own, for prompts
and for the generated text (streamed or not), in the async Llama and its sync twin."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from allama import Llama, LlamaHFTokenizer, LlamaTokenizer
from allama import sync
from allama.tokenizer import BaseLlamaTokenizer
from tests.hf_tokenizers import build_sentencepiece_bpe, build_word_level
from tests.scripted import forced_tokens

pytest.importorskip("transformers", reason="LlamaHFTokenizer tests need the `hf` extra (in `test`)")

REPLY = "日本 🦙 llamas, naïve café"
PROMPT = "Hello world, the quick"


@pytest.fixture(scope="module")
def hf(tmp_path_factory) -> LlamaHFTokenizer:
    return LlamaHFTokenizer.from_pretrained(build_sentencepiece_bpe(tmp_path_factory.mktemp("sp")))


@pytest.fixture(scope="module")
def llm_options(hf: LlamaHFTokenizer):
    return dict(n_ctx=256, n_parallel=2, tokenizer=hf)


def text_after(hf: LlamaHFTokenizer, prompt: Sequence[int], generated: Sequence[int]) -> str:
    """What `generated` adds to the prompt's text, by decoding both whole (the reference)."""
    decode = hf.hf_tokenizer.decode
    whole = decode(list(prompt) + list(generated), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    before = decode(list(prompt), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    assert whole.startswith(before)
    return whole[len(before):]


def known_words(hf: LlamaHFTokenizer):
    """A logits processor that lets the model pick only the tokenizer's learned pieces: no ids
    it does not know, no special or byte tokens (random bytes would be invalid UTF-8)."""
    names = hf.hf_tokenizer.convert_ids_to_tokens(list(range(len(hf.hf_tokenizer))))
    allowed = np.array([not (name.startswith("<") and name.endswith(">")) for name in names])

    def processor(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        out = np.full_like(scores, -np.inf)
        out[:len(allowed)][allowed] = scores[:len(allowed)][allowed]
        return out

    return processor


def test_llama_tokenizes_and_detokenizes_with_the_given_tokenizer(llm, hf):
    assert llm.tokenizer_ is hf
    assert llm.tokenize(PROMPT.encode()) == hf.tokenize(PROMPT.encode(), add_bos=True, special=False)
    with pytest.raises(TypeError, match="bytes"):  # as llama-cpp-python: text is UTF-8 bytes
        llm.tokenize(PROMPT)
    tokens = hf.tokenize(REPLY.encode())
    assert llm.detokenize(tokens) == REPLY.encode()
    assert isinstance(llm.tokenizer(), LlamaTokenizer)  # as llama-cpp-python: the model's own


@pytest.mark.anyio
async def test_prompt_tokens_come_from_the_given_tokenizer(llm, hf):
    out = await llm.create_completion(PROMPT, max_tokens=2, temperature=0, logits_processor=known_words(hf))
    assert out["usage"]["prompt_tokens"] == len(hf.tokenize(PROMPT.encode()))


@pytest.mark.anyio
async def test_generated_text_is_the_given_tokenizers_streamed_or_not(llm, hf):
    prompt = hf.tokenize(PROMPT.encode())
    reply = hf.tokenize(REPLY.encode(), add_bos=False)
    assert len(reply) > len(REPLY.split()) + 4  # characters split over byte tokens
    expected = text_after(hf, prompt, reply)
    assert expected.strip() == REPLY
    out = await llm.create_completion(PROMPT, max_tokens=len(reply) + 1, logits_processor=forced_tokens(llm, reply))
    assert out["choices"][0]["text"] == expected
    stream = await llm.create_completion(PROMPT, max_tokens=len(reply) + 1, stream=True,
                                         logits_processor=forced_tokens(llm, reply))
    deltas = [chunk["choices"][0]["text"] async for chunk in stream]
    assert "".join(deltas) == expected
    assert "\ufffd" not in "".join(deltas) and len([d for d in deltas if d]) > 3


@pytest.mark.anyio
async def test_free_generation_streams_the_text_it_returns(llm, hf):
    prompt = hf.tokenize(PROMPT.encode())
    seen: list[np.ndarray] = []

    def record(ids: np.ndarray, logits: np.ndarray) -> bool:
        seen.append(ids.copy())
        return len(ids) - len(prompt) >= 24

    kwargs = dict(max_tokens=100, temperature=0, logits_processor=known_words(hf))
    out = await llm.create_completion(PROMPT, stopping_criteria=record, **kwargs)
    generated = [int(t) for t in seen[-1][len(prompt):]]
    text = out["choices"][0]["text"]
    assert len(generated) == 24 and text == text_after(hf, prompt, generated)
    stream = await llm.create_completion(PROMPT, stream=True, **kwargs,
                                         stopping_criteria=lambda ids, _: len(ids) - len(prompt) >= 24)
    assert "".join([chunk["choices"][0]["text"] async for chunk in stream]) == text


@pytest.mark.anyio
async def test_logprob_tokens_are_the_given_tokenizers(llm, hf):
    reply = hf.tokenize(b"llamas eat grass", add_bos=False)
    out = await llm.create_completion(PROMPT, max_tokens=len(reply) + 1, logprobs=0,
                                      logits_processor=forced_tokens(llm, reply))
    assert out["choices"][0]["logprobs"]["tokens"] == [hf.detokenize([t]).decode() for t in reply]


@pytest.mark.anyio
async def test_tokenizer_ids_outside_the_models_vocabulary_are_a_clear_error(llama_f32_path, tmp_path):
    wide = LlamaHFTokenizer.from_pretrained(build_word_level(tmp_path, {"<unk>": 0, "hello": 40000, "world": 7}))
    async with Llama(str(llama_f32_path), n_ctx=128, n_parallel=1, tokenizer=wide) as model:
        with pytest.raises(ValueError, match=r"token id 40000, outside this model's vocabulary \[0, 32000\)"):
            model.tokenize(b"hello world")
        with pytest.raises(ValueError, match="token id 40000"):
            await model.create_completion("hello world", max_tokens=2)
        out = await model.create_completion("world", max_tokens=2, temperature=0)
        assert out["usage"]["prompt_tokens"] == 1


class FailingTokenizer(BaseLlamaTokenizer):
    """Tokenizes with the model's vocabulary; fails to detokenize generated tokens when told to."""

    def __init__(self, own: LlamaTokenizer) -> None:
        self.own = own
        self.fail = False

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        return self.own.tokenize(text, add_bos, special)

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        if self.fail:
            raise RuntimeError("this tokenizer cannot detokenize")
        return self.own.detokenize(tokens, prev_tokens, special)


@pytest.mark.anyio
async def test_a_failing_tokenizer_fails_its_request_not_the_engine(llama_f32_path):
    failing = FailingTokenizer(LlamaTokenizer.from_ggml_file(llama_f32_path))
    async with Llama(str(llama_f32_path), n_ctx=128, n_parallel=1, tokenizer=failing) as model:
        failing.fail = True
        with pytest.raises(RuntimeError, match="cannot detokenize"):
            await model.create_completion("Hi", max_tokens=4, temperature=0)
        failing.fail = False
        out = await model.create_completion("Hi", max_tokens=4, temperature=0, ignore_eos=True)
        assert out["usage"]["completion_tokens"] == 4
        assert model.stats().active == 0


def test_a_tokenizer_without_tokenize_and_detokenize_is_refused(llama_f32_path):
    with pytest.raises(TypeError, match="tokenize"):
        Llama(str(llama_f32_path), vocab_only=True, tokenizer="gpt2")


def test_without_a_tokenizer_llama_uses_its_own(llama_f32_path):
    model = Llama(str(llama_f32_path), vocab_only=True)
    assert isinstance(model.tokenizer_, LlamaTokenizer)
    assert model.detokenize(model.tokenize(b"Hello world")) == b"Hello world"


def test_sync_llama_uses_the_given_tokenizer(llama_f32_path, hf):
    reply = hf.tokenize(REPLY.encode(), add_bos=False)
    expected = text_after(hf, hf.tokenize(PROMPT.encode()), reply)
    with sync.Llama(str(llama_f32_path), n_ctx=256, n_parallel=1, tokenizer=hf) as model:
        assert model.tokenizer_ is hf
        assert model.tokenize(PROMPT.encode()) == hf.tokenize(PROMPT.encode(), add_bos=True, special=False)
        out = model.create_completion(PROMPT, max_tokens=len(reply) + 1, logits_processor=forced_tokens(model, reply))
        assert out["choices"][0]["text"] == expected
        chunks = model.create_completion(PROMPT, max_tokens=len(reply) + 1, stream=True,
                                         logits_processor=forced_tokens(model, reply))
        assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == expected
