"""create_chat_completion: OpenAI chat shapes, streaming protocol, format choice."""

from __future__ import annotations

import dataclasses

import pytest

from allama import Llama
from allama.testing.model_builder import LlamaConfig, build_llama

from ..conftest import TINY_LLAMA

pytestmark = pytest.mark.anyio

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture(scope="module")
def chat_model_path(models_dir):
    return build_llama(models_dir / "chat.gguf", dataclasses.replace(TINY_LLAMA, chat_template=TEMPLATE))[0]


@pytest.fixture(scope="module")
def llm(chat_model_path):
    model = Llama(str(chat_model_path), n_ctx=512, n_parallel=4)
    yield model
    model.close()


async def test_response_has_the_openai_chat_shape(llm):
    out = await llm.create_chat_completion(MESSAGES, max_tokens=5, temperature=0)
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 5


async def test_the_models_template_renders_the_prompt(llm):
    rendered = llm.chat_formatter()(messages=MESSAGES)
    assert rendered.prompt == "<s><|system|>Be brief.<|end|><|user|>Hi!<|end|><|assistant|>"
    out = await llm.create_chat_completion(MESSAGES, max_tokens=4, temperature=0)
    expected = await llm.create_completion(llm.tokenize(rendered.prompt.encode(), add_bos=False, special=True),
                                           max_tokens=4, temperature=0, stop=["</s>"])
    assert out["choices"][0]["message"]["content"] == expected["choices"][0]["text"]
    assert out["usage"]["prompt_tokens"] == expected["usage"]["prompt_tokens"]


async def test_stream_follows_the_chunk_protocol(llm):
    full = await llm.create_chat_completion(MESSAGES, max_tokens=6, temperature=0)
    stream = await llm.create_chat_completion(MESSAGES, max_tokens=6, temperature=0, stream=True,
                                              stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["delta"] == {} and chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert text == full["choices"][0]["message"]["content"]


async def test_logprobs_in_the_chat_shape(llm):
    out = await llm.create_chat_completion(MESSAGES, max_tokens=3, temperature=0, logprobs=True, top_logprobs=2)
    content = out["choices"][0]["logprobs"]["content"]
    assert len(content) == 3
    assert {"token", "logprob", "bytes", "top_logprobs"} <= set(content[0])
    assert "".join(c["token"] for c in content) == out["choices"][0]["message"]["content"]


async def test_max_completion_tokens_and_n(llm):
    out = await llm.create_chat_completion(MESSAGES, max_completion_tokens=2, n=2, temperature=1.0, seed=3)
    assert [c["index"] for c in out["choices"]] == [0, 1]
    assert out["usage"]["completion_tokens"] == 4


async def test_a_named_format_overrides_the_template(chat_model_path):
    async with Llama(str(chat_model_path), n_ctx=256, chat_format="chatml") as chatml:
        assert chatml.chat_formatter()(messages=MESSAGES).prompt.startswith("<|im_start|>system\nBe brief.")
        out = await chatml.create_chat_completion(MESSAGES, max_tokens=2)
        assert out["usage"]["completion_tokens"] == 2


async def test_without_a_template_llama_2_is_used(llama_f32_path):
    async with Llama(str(llama_f32_path), n_ctx=256) as plain:
        assert plain.chat_formatter()(messages=MESSAGES).prompt.startswith("[INST] <<SYS>>\nBe brief.")


async def test_empty_messages_are_rejected(llm):
    with pytest.raises(ValueError, match="messages"):
        await llm.create_chat_completion([])
