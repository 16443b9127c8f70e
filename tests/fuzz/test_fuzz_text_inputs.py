"""Fuzzing the pure-Python parsers and writers that see untrusted text: the JSON-schema
converter, chat-template rendering, tool-call parsing and the SSE writer. Each either
succeeds with a well-formed result or raises its documented error; nothing else."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from allama import _native
from allama.chat.registry import get_chat_format, list_chat_formats
from allama.chat.tool_calls import ToolCallSplitter, parse_tool_calls
from allama.errors import GrammarError
from allama.grammar import json_schema_to_gbnf
from allama.server.event_stream import encode_event

from .profile import FUZZ

# Any text, lone surrogates included (a JSON body may carry "\ud800").
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=60)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False) | ANY_TEXT
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(ANY_TEXT, inner, max_size=4), max_leaves=20)

_TYPES = st.sampled_from(["string", "number", "integer", "boolean", "null", "object", "array"])
SCHEMAS = st.recursive(
    st.fixed_dictionaries({"type": _TYPES}, optional={
        "minimum": st.integers(-1000, 1000), "maximum": st.integers(-1000, 1000),
        "minLength": st.integers(0, 12), "maxLength": st.integers(0, 12),
        "enum": st.lists(JSON_SCALARS, min_size=1, max_size=5), "const": JSON_SCALARS,
        "pattern": st.sampled_from(["^[a-z]+$", "^\\d{3}-\\d{2}$", "(ab|cd)*", "[", "a{2,1}", "^.$"]),
        "format": st.sampled_from(["date", "date-time", "time", "uuid", "email", "unknown"]),
    }),
    lambda inner: st.fixed_dictionaries({"type": st.just("object")}, optional={
        "properties": st.dictionaries(ANY_TEXT, inner, max_size=4),
        "required": st.lists(ANY_TEXT, max_size=3), "additionalProperties": st.booleans() | inner,
    }) | st.fixed_dictionaries({"type": st.just("array"), "items": inner}, optional={
        "minItems": st.integers(0, 4), "maxItems": st.integers(0, 4)}) | st.fixed_dictionaries(
        {"anyOf": st.lists(inner, min_size=1, max_size=3)}) | st.fixed_dictionaries(
        {"oneOf": st.lists(inner, min_size=1, max_size=3)}) | st.fixed_dictionaries({"$ref": ANY_TEXT}),
    max_leaves=12,
) | JSON_VALUES


@FUZZ
@given(SCHEMAS)
def test_schema_conversion_gives_a_grammar_llama_cpp_parses_or_a_grammar_error(schema):
    try:
        grammar = json_schema_to_gbnf(schema)
    except (GrammarError, ValueError, TypeError):
        return
    assert not _native.grammar_problem(grammar, "root")


MESSAGES = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool", "function"]),
     "content": ANY_TEXT | st.none() | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": ANY_TEXT}),
                                                max_size=2)},
    optional={"name": ANY_TEXT, "tool_call_id": ANY_TEXT}), min_size=1, max_size=5)


@FUZZ
@given(st.sampled_from(sorted(list_chat_formats())), MESSAGES)
def test_chat_formats_render_any_conversation_or_refuse_it_clearly(name, messages):
    try:
        result = get_chat_format(name)(messages=messages)
    except (ValueError, TypeError) as exc:  # TemplateError is a ValueError
        assert str(exc)
        return
    assert isinstance(result.prompt, str)


TOOL_TEXT = st.lists(st.sampled_from(
    ["<tool_call>", "</tool_call>", "{", "}", "[", "]", '"name"', '"arguments"', ":", ",", '"f"', "[TOOL_CALLS]",
     "<|python_tag|>", "functools", "<function=f>", "</function>", "null", "1e999", '"\\ud800"']) | ANY_TEXT,
    max_size=20).map("".join)


@FUZZ
@given(TOOL_TEXT)
def test_tool_call_parsing_never_raises_and_keeps_valid_json_arguments(text):
    content, calls = parse_tool_calls(text)
    assert isinstance(content, str)
    for call in calls:
        json.loads(call.as_openai()["function"]["arguments"])


@FUZZ
@given(st.lists(TOOL_TEXT, max_size=6))
def test_the_streaming_splitter_agrees_with_itself_on_any_cut(pieces):
    splitter = ToolCallSplitter()
    streamed = "".join(splitter.feed(piece) for piece in pieces)
    rest, calls = splitter.finish()
    assert isinstance(streamed + rest, str)
    assert all(isinstance(c.name, str) for c in calls)


@FUZZ
@given(JSON_VALUES)
def test_each_sse_event_is_one_data_line_that_parses_back(payload):
    event = encode_event({"choices": [{"delta": {"content": payload}}]})
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    body = event[len(b"data: "):-2]
    assert b"\n" not in body and b"\r" not in body
    assert len(body.decode("utf-8", "surrogatepass").splitlines()) == 1  # nor any line end str.splitlines knows
    assert json.loads(body.decode("utf-8"))["choices"][0]["delta"]["content"] == payload
