"""create_chat_completion: OpenAI chat shapes, streaming protocol, format choice."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from allama import Llama
from allama.testing.model_builder import build_llama

from ..scripted import forced_text
from ..tiny_models import TINY_LLAMA

pytestmark = pytest.mark.anyio

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]


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


async def test_top_logprobs_are_the_n_most_likely_with_the_chosen_token_first_under_greedy(llm):
    out = await llm.create_chat_completion(MESSAGES, max_tokens=4, temperature=0, logprobs=True, top_logprobs=3)
    for position in out["choices"][0]["logprobs"]["content"]:
        top = position["top_logprobs"]
        assert len(top) == 3  # OpenAI's count: the chosen token is one of the n
        assert top[0]["token"] == position["token"] and top[0]["logprob"] == position["logprob"]
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)


async def test_max_completion_tokens_and_n(llm):
    out = await llm.create_chat_completion(MESSAGES, max_completion_tokens=2, n=2, temperature=1.0, seed=3)
    assert [c["index"] for c in out["choices"]] == [0, 1]
    assert out["usage"]["completion_tokens"] == 4


async def test_a_named_format_overrides_the_template(chat_model_path):
    async with Llama(str(chat_model_path), n_ctx=256, chat_format="chatml") as chatml:
        assert chatml.chat_formatter()(messages=MESSAGES).prompt.startswith("<|im_start|>system\nBe brief.")
        out = await chatml.create_chat_completion(MESSAGES, max_tokens=2)
        assert out["usage"]["completion_tokens"] == 2


async def test_without_a_template_llama_2_is_used_and_a_warning_says_so_once(llama_f32_path, caplog):
    async with Llama(str(llama_f32_path), n_ctx=256) as plain:
        with caplog.at_level(logging.WARNING, logger="allama.chat"):
            assert plain.chat_formatter()(messages=MESSAGES).prompt.startswith("[INST] <<SYS>>\nBe brief.")
            await plain.create_chat_completion(MESSAGES, max_tokens=1)
        warnings = [r.getMessage() for r in caplog.records if r.name == "allama.chat"]
        assert len(warnings) == 1 and "no chat template" in warnings[0] and "chat_format" in warnings[0]


async def test_a_template_or_a_chat_format_gives_no_fallback_warning(llm, llama_f32_path, caplog):
    with caplog.at_level(logging.WARNING, logger="allama.chat"):
        llm.chat_formatter()
        async with Llama(str(llama_f32_path), n_ctx=256, chat_format="chatml") as named:
            named.chat_formatter()
    assert not [r for r in caplog.records if r.name == "allama.chat"]


async def test_empty_messages_are_rejected(llm):
    with pytest.raises(ValueError, match="messages"):
        await llm.create_chat_completion([])


THINKING_TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
                     "{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}")


@pytest.fixture(scope="module")
def thinker(models_dir):
    path = build_llama(models_dir / "thinker.gguf", dataclasses.replace(TINY_LLAMA, chat_template=THINKING_TEMPLATE))[0]
    model = Llama(str(path), n_ctx=512, n_parallel=2)
    yield model
    model.close()


async def test_reasoning_goes_to_reasoning_content(thinker):
    out = await thinker.create_chat_completion(MESSAGES, max_tokens=60,
                                               logits_processor=forced_text(thinker, "plan it</think>The answer"))
    message = out["choices"][0]["message"]
    assert message["reasoning_content"] == "plan it"
    assert message["content"] == "The answer"


async def test_streamed_reasoning_deltas(thinker):
    stream = await thinker.create_chat_completion(MESSAGES, max_tokens=60, stream=True,
                                                  logits_processor=forced_text(thinker, "a b</think>c d"))
    deltas = [c["choices"][0]["delta"] async for c in stream if c["choices"]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content", "") for d in deltas)
    assert reasoning == "a b" and content == "c d"
    assert not any("think>" in v for d in deltas for v in d.values() if isinstance(v, str))


async def test_a_final_assistant_message_is_continued(llm):
    prefix = "The answer is"
    rendered = llm.chat_formatter()(messages=MESSAGES, add_generation_prompt=True).prompt
    conversation = MESSAGES + [{"role": "assistant", "content": prefix}]
    out = await llm.create_chat_completion(conversation, max_tokens=4, temperature=0)
    expected = await llm.create_completion(llm.tokenize((rendered + prefix).encode(), add_bos=False, special=True),
                                           max_tokens=4, temperature=0)
    assert out["choices"][0]["message"]["content"] == expected["choices"][0]["text"]


async def test_developer_role_and_text_parts(llm):
    messages = [{"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]}]
    a = await llm.create_chat_completion(messages, max_tokens=4, temperature=0)
    b = await llm.create_chat_completion(MESSAGES, max_tokens=4, temperature=0)
    assert a["choices"][0]["message"] == b["choices"][0]["message"]
    with pytest.raises(ValueError, match="text content parts only"):
        await llm.create_chat_completion([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])


async def test_registered_handler_serves_the_request(chat_model_path):
    from allama.chat import register_chat_completion_handler

    @register_chat_completion_handler("echo-test")
    async def echo(llama, messages, **request):
        return {"object": "chat.completion", "choices": [{"message": {"role": "assistant",
                                                                       "content": messages[-1]["content"]}}]}

    async with Llama(str(chat_model_path), n_ctx=128, chat_handler="echo-test") as handled:
        out = await handled.create_chat_completion(MESSAGES)
        assert out["choices"][0]["message"]["content"] == "Hi!"


def test_known_templates_map_to_their_named_format():
    import json
    from pathlib import Path

    from allama.chat import guess_chat_format

    known = json.loads((Path(__file__).parent / "goldens" / "known_templates.json").read_text())
    for entry in known.values():
        assert guess_chat_format(entry["template"]) == entry["format"]
    assert guess_chat_format(TEMPLATE) is None


async def test_openai_v1_types(llm):
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    out = await llm.create_chat_completion_openai_v1(MESSAGES, max_tokens=3, temperature=0)
    assert isinstance(out, ChatCompletion) and out.choices[0].message.role == "assistant"
    stream = await llm.create_chat_completion_openai_v1(MESSAGES, max_tokens=3, temperature=0, stream=True)
    chunks = [c async for c in stream]
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == out.choices[0].message.content
