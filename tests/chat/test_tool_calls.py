"""Tool calls: parsers on recorded outputs of each family, forced calls through a grammar,
and the OpenAI shapes (message.tool_calls, streamed tool_calls deltas)."""

from __future__ import annotations

import dataclasses
import json
import random

import jsonschema
import pytest

from allama import Llama
from allama.chat.tool_calls import parse_tool_calls, tool_call_grammar
from allama.testing.model_builder import build_llama

from ..scripted import forced_reply
from ..tiny_models import TINY_LLAMA

pytestmark = pytest.mark.anyio

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                                    "unit": {"enum": ["C", "F"]}},
                   "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 8}},
                                       "required": ["zone"]}}}

# Recorded outputs (the formats these families emit)
HERMES = ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}\n'
          '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>')
MISTRAL_V3 = '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}, "id": "a1b2c3d4e"}]'
MISTRAL_V11 = '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "unit": "C"}[TOOL_CALLS]get_time[ARGS]{"zone": "CET"}'
LLAMA_31 = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "unit": "C"}}'
LLAMA_31_PLAIN = '{"name": "get_time", "parameters": {"zone": "CET"}}'


@pytest.mark.parametrize("text, content, names", [
    (HERMES, "Let me check.", ["get_weather", "get_time"]),
    (MISTRAL_V3, "", ["get_weather"]),
    (MISTRAL_V11, "", ["get_weather", "get_time"]),
    (LLAMA_31, "", ["get_weather"]),
    (LLAMA_31_PLAIN, "", ["get_time"]),
])
def test_parsers_read_each_familys_calls(text, content, names):
    got_content, calls = parse_tool_calls(text)
    assert got_content == content
    assert [c.name for c in calls] == names
    assert calls[0].arguments in ({"city": "Paris", "unit": "C"}, {"zone": "CET"})


def test_plain_text_and_json_that_is_not_a_call_stay_content():
    for text in ("Just an answer.", '{"answer": 42}', "<tool_call>not json</tool_call>"):
        content, calls = parse_tool_calls(text)
        assert calls == [] and content == text


def test_mistral_ids_are_kept_and_openai_shape():
    _, calls = parse_tool_calls(MISTRAL_V3)
    call = calls[0].as_openai()
    assert call["id"] == "a1b2c3d4e" and call["type"] == "function"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "unit": "C"}


HERMES_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>\n{{ c.function | tojson }}\n</tool_call>{% endfor %}"
    "{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if tools %}<|im_start|>system\nTools: {% for t in tools %}{{ t.function.name }} {% endfor %}<|im_end|>\n"
    "{% endif %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def hermes(models_dir):
    path = build_llama(models_dir / "hermes.gguf", dataclasses.replace(TINY_LLAMA, chat_template=HERMES_TEMPLATE))[0]
    model = Llama(str(path), n_ctx=1024, n_parallel=2)
    yield model
    model.close()


MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]


async def test_named_tool_choice_forces_a_valid_call(hermes):
    out = await hermes.create_chat_completion(
        MESSAGES, tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=80, temperature=0.7, seed=1)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and call["id"].startswith("call_")
    jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER["function"]["parameters"])


async def test_required_picks_one_of_the_tools(hermes):
    out = await hermes.create_chat_completion(MESSAGES, tools=[WEATHER, TIME], tool_choice="required",
                                              parallel_tool_calls=False, max_tokens=80, seed=2)
    calls = out["choices"][0]["message"]["tool_calls"]
    assert len(calls) == 1 and calls[0]["function"]["name"] in ("get_weather", "get_time")


async def test_auto_reads_calls_the_model_writes(hermes):
    script = forced_reply(hermes, HERMES)

    out = await hermes.create_chat_completion(MESSAGES, tools=[WEATHER, TIME], max_tokens=200,
                                              logits_processor=script)
    message = out["choices"][0]["message"]
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather", "get_time"]
    assert message["content"] == "Let me check."
    assert out["choices"][0]["finish_reason"] == "tool_calls"


async def test_streamed_tool_calls_follow_openais_delta_protocol(hermes):
    stream = await hermes.create_chat_completion(
        MESSAGES, tools=[WEATHER], tool_choice="required", max_tokens=80, seed=3, stream=True)
    chunks = [c async for c in stream]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert not any("<tool_call>" in d.get("content", "") for d in deltas)
    head = next(d["tool_calls"][0] for d in deltas if "tool_calls" in d)
    assert head["index"] == 0 and head["type"] == "function" and head["function"]["name"] == "get_weather"
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas if "tool_calls" in d)
    jsonschema.validate(json.loads(arguments), WEATHER["function"]["parameters"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_tool_results_flow_into_the_next_prompt(hermes):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    conversation = MESSAGES + [{"role": "assistant", "content": None, "tool_calls": [call]},
                               {"role": "tool", "tool_call_id": "call_1", "content": "21C"}]
    prompt = hermes.chat_formatter()(messages=conversation, tools=[WEATHER]).prompt
    assert "<tool_call>" in prompt and "21C" in prompt and "get_weather" in prompt
    out = await hermes.create_chat_completion(conversation, tools=[WEATHER], tool_choice="none", max_tokens=3)
    assert "tool_calls" not in out["choices"][0]["message"]


async def test_legacy_functions_map_to_tools(hermes):
    out = await hermes.create_chat_completion(MESSAGES, functions=[WEATHER["function"]],
                                              function_call={"name": "get_weather"}, max_tokens=80, seed=4)
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_forcing_an_unknown_tool_is_an_error():
    with pytest.raises(ValueError, match="not among the tools"):
        tool_call_grammar([WEATHER], "nope", False, False)


def test_splitter_streams_content_and_holds_back_markup():
    from allama.chat.tool_calls import ToolCallSplitter

    splitter = ToolCallSplitter()
    sent = [splitter.feed(piece) for piece in ["Let me ", "check.\n<tool", "_call>\n{\"name\": \"get_time\", ",
                                                "\"arguments\": {\"zone\": \"CET\"}}\n</tool_call>"]]
    assert "".join(sent) == "Let me check.\n"
    assert all("<" not in s for s in sent)
    rest, calls = splitter.finish()
    assert rest == "" and [c.name for c in calls] == ["get_time"]


def test_splitter_gives_back_markup_that_holds_no_call():
    from allama.chat.tool_calls import ToolCallSplitter

    splitter = ToolCallSplitter()
    sent = splitter.feed("a <tool_call> that is not one")
    rest, calls = splitter.finish()
    assert sent + rest == "a <tool_call> that is not one" and calls == []


def test_splitter_sends_exactly_the_text_before_the_first_marker_however_it_is_cut():
    from allama.chat.tool_calls import MARKERS, ToolCallSplitter

    rng = random.Random(5)
    words = ["Hi", " there", " <", "<b>", "[", "x]", " a<tool", "_call>", "[TOOL", "_CALLS]", "<|python_tag|>",
             "<tool_call>", " ok", "\n"]
    for _ in range(400):
        text = "x" + "".join(rng.choice(words) for _ in range(rng.randint(0, 8)))  # "x": not a JSON reply
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 6))))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
        splitter = ToolCallSplitter()
        sent = "".join(splitter.feed(piece) for piece in pieces)
        first = min((i for i in (text.find(m) for m in MARKERS) if i != -1), default=-1)
        if first != -1:
            assert sent == text[:first]
        else:  # all of it, but for an end that may still begin a marker
            held = text[len(sent):]
            assert text.startswith(sent) and (not held or any(m.startswith(held) for m in MARKERS))
        rest, calls = splitter.finish()
        assert calls == [] and sent + rest == text  # (no JSON here: the markup comes back as text)


async def test_streamed_content_before_a_call_arrives_incrementally(hermes):
    script = forced_reply(hermes, HERMES)

    stream = await hermes.create_chat_completion(MESSAGES, tools=[WEATHER, TIME], max_tokens=200, stream=True,
                                                 logits_processor=script)
    deltas = [c["choices"][0]["delta"] async for c in stream if c["choices"]]
    contents = [d["content"] for d in deltas[1:] if d.get("content")]
    assert len(contents) >= 2  # streamed, not sent in one piece at the end
    assert "".join(contents).strip() == "Let me check."
    names = [d["tool_calls"][0]["function"]["name"] for d in deltas if "tool_calls" in d and
             "name" in d["tool_calls"][0]["function"]]
    assert names == ["get_weather", "get_time"]
