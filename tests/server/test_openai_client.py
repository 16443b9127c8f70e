"""The server through the official `openai` package, sync and async clients."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from .model_aliases import CHAT, EMBED

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}},
                   "required": ["city"]}}}


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
def async_client(base_url):
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0)


def test_completion(client):
    out = client.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=6, temperature=0)
    assert out.object == "text_completion" and out.model == CHAT
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 6


def test_completion_of_several_prompts(client):
    out = client.completions.create(model=CHAT, prompt=["a", "b"], max_tokens=2, temperature=0)
    assert sorted(c.index for c in out.choices) == [0, 1]


def test_chat(client):
    out = client.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=5)
    assert out.object == "chat.completion" and out.choices[0].message.role == "assistant"
    assert out.usage.completion_tokens == 5
    assert out.usage.prompt_tokens_details.cached_tokens is not None


def test_streaming_chat_matches_the_whole_reply(client):
    whole = client.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=8, temperature=0)
    stream = client.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=8, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8


def test_forced_tool_call(client):
    out = client.chat.completions.create(model=CHAT, messages=MESSAGES, tools=[WEATHER], tool_choice="required",
                                         parallel_tool_calls=False, max_tokens=60, seed=3)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


def test_streamed_tool_call_deltas(client):
    stream = client.chat.completions.create(model=CHAT, messages=MESSAGES, tools=[WEATHER], max_tokens=60, seed=3,
                                            parallel_tool_calls=False,
                                            tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                            stream=True)
    deltas = [c.choices[0].delta for c in stream if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].tool_calls[0].function.name == "get_weather" and deltas[0].tool_calls[0].id
    assert all(d.tool_calls[0].id is None and d.tool_calls[0].function.name is None for d in deltas[1:])
    json.loads("".join(d.tool_calls[0].function.arguments or "" for d in deltas))


def test_response_format_json_schema(client):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    out = client.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=30, temperature=0,
                                         response_format={"type": "json_schema",
                                                          "json_schema": {"name": "r", "schema": schema}})
    jsonschema.validate(json.loads(out.choices[0].message.content), schema)


def test_embeddings_are_unit_vectors(client):
    out = client.embeddings.create(model=EMBED, input=["hello world", "good night"])
    assert [d.index for d in out.data] == [0, 1]
    for d in out.data:
        assert abs(sum(x * x for x in d.embedding) - 1.0) < 1e-4
    assert out.usage.prompt_tokens > 0


def test_models_lists_both_aliases(client):
    assert sorted(m.id for m in client.models.list().data) == sorted([CHAT, EMBED])


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="nope", messages=MESSAGES)


@pytest.mark.parametrize("fields, message", [
    ({"max_tokens": 10_000}, "at most 4000"),
    ({"n": 9}, "at most 4"),
    ({"temperature": -1}, "temperature"),
    ({"messages": []}, "messages"),
    ({"extra_body": {"grammar": "root ::= ("}}, "grammar"),
])
def test_bad_requests_are_400(client, fields, message):
    request = {"model": CHAT, "messages": MESSAGES, **fields}
    with pytest.raises(openai.BadRequestError, match=message) as info:
        client.chat.completions.create(**request)
    assert info.value.status_code == 400


def test_a_prompt_too_long_for_the_context_names_the_limit(client):
    with pytest.raises(openai.BadRequestError, match="context window of 512"):
        client.completions.create(model=CHAT, prompt=" word" * 2000, max_tokens=1)


@pytest.mark.anyio
async def test_async_client_streams(async_client):
    stream = await async_client.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=4, stream=True)
    chunks = [c async for c in stream]
    assert chunks[-1].choices[0].finish_reason == "length"
    out = await async_client.embeddings.create(model=EMBED, input="hi")
    assert len(out.data) == 1
