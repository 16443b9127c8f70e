"""Reading a chat request: ChatRequest gives every chat path (the default handler and the
function-calling handlers) the same reading of tools, stop strings, the token limit,
logprobs, the grammar and the template variables; the other fields are completion options."""

from __future__ import annotations

import pytest

from allama.chat.request import ChatRequest

WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


def test_max_completion_tokens_wins_over_max_tokens():
    assert ChatRequest.read({"max_tokens": 5, "max_completion_tokens": 9}).max_tokens == 9
    assert ChatRequest.read({"max_tokens": 5, "max_completion_tokens": None}).max_tokens == 5
    assert ChatRequest.read({}).max_tokens is None


def test_stop_strings_are_read_as_a_list():
    assert ChatRequest.read({"stop": "END"}).stops == ["END"]
    assert ChatRequest.read({"stop": ["a", "b"]}).stops == ["a", "b"]
    assert ChatRequest.read({"stop": None}).stops == []
    with pytest.raises(TypeError, match="stop"):
        ChatRequest.read({"stop": 3})


def test_logprobs_ask_for_top_logprobs_alternatives():
    assert ChatRequest.read({"logprobs": True, "top_logprobs": 3}).logprobs == 3
    assert ChatRequest.read({"logprobs": True}).logprobs == 0
    assert ChatRequest.read({"logprobs": False, "top_logprobs": 3}).logprobs is None


def test_legacy_functions_are_read_as_tools():
    request = ChatRequest.read({"functions": [WEATHER["function"]], "function_call": {"name": "weather"}})
    assert request.legacy and request.tools == [WEATHER]
    assert request.tool_choice == {"type": "function", "function": {"name": "weather"}}
    assert not ChatRequest.read({"tools": [WEATHER]}).legacy
    with pytest.raises(ValueError, match="not among the tools"):
        ChatRequest.read({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "other"}}})


def test_response_format_gives_the_grammar_else_the_callers_grammar_stands():
    assert ChatRequest.read({"grammar": 'root ::= "x"'}).grammar == 'root ::= "x"'
    assert "root" in ChatRequest.read({"grammar": 'root ::= "x"', "response_format": {"type": "json_object"}}).grammar
    assert ChatRequest.read({"grammar": 'root ::= "x"', "response_format": {"type": "text"}}).grammar == 'root ::= "x"'


def test_reasoning_effort_joins_the_template_variables_unless_they_set_it():
    assert ChatRequest.read({"reasoning_effort": "low"}).template_vars == {"reasoning_effort": "low"}
    given = {"chat_template_kwargs": {"reasoning_effort": "high", "x": 1}, "reasoning_effort": "low"}
    assert ChatRequest.read(given).template_vars == {"reasoning_effort": "high", "x": 1}


def test_the_other_fields_are_completion_options():
    request = ChatRequest.read({"temperature": 0.1, "seed": 3, "stop": "x", "tools": None, "mirostat_mode": 2,
                                "parallel_tool_calls": False, "max_tokens": 4})
    assert request.options == {"temperature": 0.1, "seed": 3, "mirostat_mode": 2}
    assert request.parallel is False
