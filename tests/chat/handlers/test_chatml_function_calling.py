"""chatml-function-calling on the tiny model: routing, parallel calls, forced calls that
match the schema, streams, limits and bad requests. The model's choices are scripted where
a test needs a particular one (random weights choose nothing on purpose)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from allama import Llama
from allama.chat.handlers import chatml_function_calling
from allama.chat.handlers.turn import MAX_CALLS

from ...scripted import scripted_steps
from .streamed import streamed_message

pytestmark = pytest.mark.anyio

WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]}
ZONE = {"type": "object", "properties": {"zone": {"enum": ["CET", "UTC"]}}, "required": ["zone"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "parameters": ZONE}}]
ASK = [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": "Weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def llm_options():
    return dict(n_ctx=2048, n_parallel=2, chat_format="chatml-function-calling")


async def test_auto_reads_several_calls(llm):
    script = scripted_steps(llm, ["functions.get_weather:", '{"city": "Paris"}',
                                  "functions.get_time:", '{"zone": "CET"}', ""])
    out = await llm.create_chat_completion(ASK, tools=TOOLS, logits_processor=script)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})]
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    assert len({c["id"] for c in calls}) == 2
    rendered = chatml_function_calling.render_prompt(ASK, [t["function"] for t in TOOLS])
    assert out["usage"]["prompt_tokens"] == len(llm.tokenize(rendered.encode(), special=True))


async def test_parallel_tool_calls_false_stops_after_one_call(llm):
    script = scripted_steps(llm, ["functions.get_weather:", '{"city": "Paris"}', "functions.get_time:"])
    out = await llm.create_chat_completion(ASK, tools=TOOLS, parallel_tool_calls=False, logits_processor=script)
    assert [c["function"]["name"] for c in out["choices"][0]["message"]["tool_calls"]] == ["get_weather"]


async def test_auto_message_is_content_with_the_callers_stop(llm):
    script = scripted_steps(llm, ["message:", "It is sunny today."])
    out = await llm.create_chat_completion(ASK, tools=TOOLS, stop=[" today"], logits_processor=script)
    choice = out["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "It is sunny"}
    assert choice["finish_reason"] == "stop"


@pytest.mark.parametrize("tool_choice", ["required", NAMED])
async def test_forced_calls_match_the_functions_schema(llm, tool_choice):
    for seed in range(4):
        out = await llm.create_chat_completion(ASK, tools=TOOLS, tool_choice=tool_choice, seed=seed,
                                               temperature=1.0, max_tokens=200)
        choice = out["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        for call in choice["message"]["tool_calls"]:
            schema = WEATHER if call["function"]["name"] == "get_weather" else ZONE
            jsonschema.validate(json.loads(call["function"]["arguments"]), schema)
        if tool_choice is NAMED:
            assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_weather"]


async def test_stream_sends_calls_as_tool_call_deltas(llm):
    full = await llm.create_chat_completion(ASK, tools=TOOLS, tool_choice=NAMED, seed=5, temperature=1.0)
    stream = await llm.create_chat_completion(ASK, tools=TOOLS, tool_choice=NAMED, seed=5, temperature=1.0,
                                              stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    head = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
    assert head["index"] == 0 and head["function"] == {"name": "get_weather", "arguments": ""}
    assert head["id"].startswith("call_") and head["type"] == "function"
    arguments = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[2:-2])
    assert arguments == full["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == full["usage"]
    assert all(c["id"] == chunks[0]["id"] and c["object"] == "chat.completion.chunk" for c in chunks)


async def test_stream_of_a_message_has_content_deltas(llm):
    script = scripted_steps(llm, ["message:", "Sunny and warm."])
    stream = await llm.create_chat_completion(ASK, tools=TOOLS, stream=True, logits_processor=script)
    assert await streamed_message(stream) == ("Sunny and warm.", "stop")


async def test_none_hides_the_tools_and_answers(llm):
    out = await llm.create_chat_completion(ASK, tools=TOOLS, tool_choice="none", max_tokens=4)
    message = out["choices"][0]["message"]
    assert "tool_calls" not in message and isinstance(message["content"], str)
    assert out["choices"][0]["finish_reason"] == "length"
    bare = await llm.create_chat_completion(ASK, max_tokens=4)
    assert out["usage"]["prompt_tokens"] == bare["usage"]["prompt_tokens"]


async def test_max_tokens_ends_a_call_with_length(llm):
    out = await llm.create_chat_completion(ASK, tools=TOOLS, tool_choice=NAMED, max_tokens=3)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 3


async def test_legacy_functions_get_function_call(llm):
    script = scripted_steps(llm, ["functions.get_weather:", '{"city": "Oslo"}', ""])
    out = await llm.create_chat_completion(ASK, functions=[t["function"] for t in TOOLS], function_call="auto",
                                           logits_processor=script)
    message = out["choices"][0]["message"]
    assert message["function_call"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    assert message["tool_calls"][0]["function"] == message["function_call"]


async def test_leaving_a_stream_early_frees_the_model(llm):
    stream = await llm.create_chat_completion(ASK, tools=TOOLS, tool_choice=NAMED, stream=True, max_tokens=200)
    async with stream:
        async for _ in stream:
            break
    out = await llm.create_chat_completion(ASK, tools=TOOLS, tool_choice="none", max_tokens=2)
    assert out["usage"]["completion_tokens"] == 2
    assert llm.stats().active == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("request_fields, message", [
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "not among the tools"),
    ({"tool_choice": "sometimes"}, "tool_choice must be"),
    ({"n": 2}, "n=1"),
    ({"messages": []}, "must not be empty"),
])
async def test_bad_requests_raise_value_error(llm, request_fields, message):
    fields = {"messages": ASK, "tools": TOOLS, **request_fields}
    with pytest.raises(ValueError, match=message):
        await llm.create_chat_completion(**fields)


CALL_AGAIN = ["functions.get_time:", '{"zone": "UTC"}'] * (MAX_CALLS + 4)


async def test_a_turn_makes_at_most_max_calls(llm):
    out = await llm.create_chat_completion(ASK, tools=TOOLS, logits_processor=scripted_steps(llm, CALL_AGAIN))
    assert len(out["choices"][0]["message"]["tool_calls"]) == MAX_CALLS
    assert out["choices"][0]["finish_reason"] == "tool_calls"


async def test_a_turn_that_fills_the_context_ends_with_length(llama_f32_path):
    small = Llama(str(llama_f32_path), n_ctx=400, chat_format="chatml-function-calling")
    try:
        out = await small.create_chat_completion(ASK, tools=TOOLS, logits_processor=scripted_steps(small, CALL_AGAIN))
    finally:
        small.close()
    assert out["choices"][0]["finish_reason"] == "length"
    assert 1 <= len(out["choices"][0]["message"]["tool_calls"]) < MAX_CALLS
