"""allama.types describes what the API returns: real responses validate against the
TypedDicts (pydantic), so a shape change that the types do not follow fails here."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from allama import Llama
from allama import types as t

pytestmark = pytest.mark.anyio

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
    "a": {"type": "integer"}}, "required": ["a"]}}}


def valid(kind, value) -> None:
    TypeAdapter(kind).validate_python(value, strict=True)


@pytest.fixture(scope="module")
def llm_options():
    return dict(n_ctx=256)


async def test_completions_and_their_chunks(llm):
    valid(t.CreateCompletionResponse, await llm.create_completion("Hi", max_tokens=3, logprobs=2))
    stream = await llm.create_completion("Hi", max_tokens=3, stream=True, stream_options={"include_usage": True})
    async for chunk in stream:
        valid(t.CreateCompletionStreamResponse, chunk)


async def test_chat_completions_tool_calls_and_their_chunks(llm):
    messages: list[t.ChatCompletionRequestMessage] = [{"role": "user", "content": "Hi"}]
    valid(t.CreateChatCompletionResponse,
          await llm.create_chat_completion(messages, max_tokens=3, logprobs=True, top_logprobs=2))
    called = await llm.create_chat_completion(messages, max_tokens=60, tools=[TOOL], tool_choice="required",
                                              temperature=0.0)
    valid(t.CreateChatCompletionResponse, called)
    assert called["choices"][0]["message"].get("tool_calls")
    for kwargs in ({}, {"tools": [TOOL], "tool_choice": "required", "max_tokens": 60}):
        stream = await llm.create_chat_completion(messages, **({"max_tokens": 3} | kwargs), stream=True)
        async for chunk in stream:
            valid(t.CreateChatCompletionStreamResponse, chunk)


async def test_embeddings_in_float_and_base64(bert_path):
    async with Llama(str(bert_path), n_ctx=256, embedding=True) as embedder:
        valid(t.CreateEmbeddingResponse, await embedder.create_embedding(["a b", "c"]))
        valid(t.CreateEmbeddingResponse, await embedder.create_embedding("a b", encoding_format="base64"))


def test_a_wrong_shape_fails_validation():
    with pytest.raises(ValueError):
        valid(t.CreateCompletionResponse, {"id": "x", "object": "text_completion", "created": 1, "model": "m",
                                           "choices": [{"text": "a", "index": 0, "finish_reason": "stop"}]})
