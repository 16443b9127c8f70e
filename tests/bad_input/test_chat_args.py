"""Bad create_chat_completion arguments: messages, roles, content, tools, tool_choice,
response_format and template options; and bad media where a projector is loaded."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from . import scenarios
from .runner import expect_raises, expect_returns, run_case

HI = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def case(name: str, kwargs: dict[str, Any], expected: tuple[str, ...] | None,
         init: dict[str, Any] | None = None) -> Any:
    """create_chat_completion(**{"messages": HI, "max_tokens": 2, **kwargs}); expected None: accepted."""
    return pytest.param({"messages": HI, "max_tokens": 2, **kwargs}, expected, init or {}, id=name)


MESSAGES = [
    case("messages-str", {"messages": "hello"}, ("TypeError", "messages")),
    case("messages-none", {"messages": None}, ("TypeError", "messages")),
    case("messages-dict", {"messages": {"role": "user", "content": "hi"}}, ("TypeError", "messages")),
    case("messages-empty", {"messages": []}, ("ValueError", "empty")),
    case("message-int", {"messages": [5]}, ("TypeError", "messages[0]")),
    case("message-without-role", {"messages": [{"content": "hi"}]}, ("ValueError", "role")),
    case("role-unknown", {"messages": [{"role": "wizard", "content": "hi"}]}, ("ValueError", "wizard")),
    case("role-int", {"messages": [{"role": 5, "content": "hi"}]}, ("ValueError", "role")),
    case("role-upper-case", {"messages": [{"role": "USER", "content": "hi"}]}, ("ValueError", "USER")),
    case("content-int", {"messages": [{"role": "user", "content": 5}]}, ("TypeError", "content")),
    case("content-dict", {"messages": [{"role": "user", "content": {"text": "hi"}}]}, ("TypeError", "content")),
    case("content-part-str", {"messages": [{"role": "user", "content": ["hi"]}]}, ("TypeError", "content")),
    case("content-part-unknown-type", {"messages": [{"role": "user", "content": [{"type": "video", "x": 1}]}]},
         ("ValueError", "text content parts")),
    case("content-image-on-a-text-model",
         {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]},
         ("ValueError", "text content parts")),
    case("content-lone-surrogate", {"messages": [{"role": "user", "content": "bad \ud800"}]},
         ("ValueError", "surrogate")),
    case("conversation-over-n_ctx", {"messages": [{"role": "user", "content": "word " * 300}]},
         ("ContextOverflowError", "context window")),
    case("chat-format-unknown", {}, ("ValueError", "no-such-format"), init={"chat_format": "no-such-format"}),
]

TOOLS = [
    case("tools-str", {"tools": "get_time"}, ("TypeError", "tools")),
    case("tools-list-of-ints", {"tools": [5]}, ("TypeError", "tools")),
    case("tool-without-function", {"tools": [{"type": "function"}]}, ("ValueError", "function")),
    case("tool-function-without-name", {"tools": [{"type": "function", "function": {"parameters": {}}}]},
         ("ValueError", "name")),
    case("tool-function-name-int", {"tools": [{"type": "function", "function": {"name": 5}}]}, ("ValueError", "name")),
    case("tool-parameters-not-a-schema", {"tools": [{"type": "function", "function": {"name": "f", "parameters": 5}}],
                                          "tool_choice": "required"}, ("TypeError", "parameters")),
    case("tool-parameters-bad-schema",
         {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "decimal"}}}],
          "tool_choice": "required"}, ("GrammarError", "decimal")),
    case("tool_choice-unknown-string", {"tools": [TOOL], "tool_choice": "sometimes"}, ("ValueError", "tool_choice")),
    case("tool_choice-int", {"tools": [TOOL], "tool_choice": 1}, ("ValueError", "tool_choice")),
    case("tool_choice-dict-without-function", {"tools": [TOOL], "tool_choice": {"type": "function"}},
         ("ValueError", "tool_choice")),
    case("tool_choice-names-an-unknown-tool",
         {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         ("ValueError", "nope")),
    case("tool_choice-required-without-tools", {"tool_choice": "required"}, None),  # nothing to force: a reply
    case("functions-str", {"functions": "get_time"}, ("TypeError", "functions")),
    case("function_call-without-name", {"functions": [TOOL["function"]], "function_call": {"arguments": "{}"}},
         ("ValueError", "function_call")),
    case("assistant-tool_calls-str",
         {"messages": HI + [{"role": "assistant", "content": None, "tool_calls": "x"}] + HI},
         ("TypeError", "tool_calls")),
]

OPTIONS = [
    case("response_format-str", {"response_format": "json"}, ("TypeError", "response_format")),
    case("response_format-type-unknown", {"response_format": {"type": "yaml"}}, ("ValueError", "yaml")),
    case("response_format-json_schema-str", {"response_format": {"type": "json_schema", "json_schema": "x"}},
         ("TypeError", "json_schema")),
    case("response_format-json_schema-without-schema", {"response_format": {"type": "json_schema",
                                                                             "json_schema": {"name": "x"}}},
         ("ValueError", "schema")),
    case("response_format-schema-int", {"response_format": {"type": "json_object", "schema": 5}},
         ("GrammarError", "not a JSON schema")),
    case("chat_template_kwargs-str", {"chat_template_kwargs": "x"}, ("TypeError", "chat_template_kwargs")),
    case("top_logprobs-negative", {"logprobs": True, "top_logprobs": -1}, ("ValueError", "logprobs")),
    case("max_completion_tokens-str", {"max_completion_tokens": "5"}, ("TypeError", "max_tokens")),
    case("top_p-above-1", {"top_p": 2.0}, ("ValueError", "top_p")),
    case("stop-empty", {"stop": ""}, ("ValueError", "stop")),
    case("n-above-n_parallel", {"n": 5}, ("ValueError", "n_parallel")),
    case("grammar-bad", {"grammar": "root ::= ("}, ("GrammarError",)),
    case("developer-role-is-system", {"messages": [{"role": "developer", "content": "be brief"}] + HI}, None),
    case("content-null", {"messages": [{"role": "user", "content": None}]}, None),
    case("final-assistant-message-is-continued", {"messages": HI + [{"role": "assistant", "content": "Well"}]}, None),
    case("reasoning_effort-int", {"reasoning_effort": 5}, None),  # a template variable, as given
]

HANDLER = [  # the same checks when a chat_format handler (function calling) renders the prompt
    case("handler-role-unknown", {"messages": [{"role": "wizard", "content": "hi"}]}, ("ValueError", "wizard"),
         init={"chat_format": "chatml-function-calling"}),
    case("handler-tool-without-function", {"tools": [{"type": "function"}]}, ("ValueError", "function"),
         init={"chat_format": "chatml-function-calling"}),
    case("handler-tool_choice-dict-without-function", {"tools": [TOOL], "tool_choice": {"type": "function"}},
         ("ValueError", "tool_choice"), init={"chat_format": "chatml-function-calling"}),
    case("handler-stop-int", {"stop": 5}, ("TypeError", "stop"), init={"chat_format": "chatml-function-calling"}),
    case("handler-top_p-nan", {"top_p": float("nan")}, ("ValueError", "top_p"),
         init={"chat_format": "chatml-function-calling"}),
]


@pytest.mark.parametrize("kwargs, expected, init", MESSAGES + TOOLS + OPTIONS + HANDLER)
def test_create_chat_completion_argument(chat_model, kwargs, expected, init):
    out = run_case(scenarios.call, chat_model, init, "create_chat_completion", (), kwargs)
    if expected is None:
        assert expect_returns(out)["finish_reasons"][0] in ("length", "stop", "tool_calls"), out.value
    else:
        expect_raises(out, *expected)


# ------------------------------------------------------------------ media (the tiny Qwen2-VL pair)

def _png(width: int, height: int, rows: bytes | None = None) -> bytes:
    """A PNG of width x height; `rows` replaces the pixel data (to make one that lies)."""
    import struct
    import zlib

    if rows is None:
        rows = b"".join(b"\x00" + bytes((x * 7 + y * 3) % 256 for x in range(width * 3)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def image_message(url: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": "What is it?"}]}]


@pytest.fixture(scope="module")
def media_pair(qwen2vl_paths) -> tuple[str, str]:
    return str(qwen2vl_paths[0]), str(qwen2vl_paths[1])


@pytest.mark.parametrize("url, expected", [
    pytest.param("data:image/png;base64,!!!not base64!!!", ("ValueError", "base64"), id="corrupt-base64"),
    pytest.param("data:image/png;base64,", ("ValueError", "empty"), id="zero-byte-data-url"),
    pytest.param("data:image/png,rawbytes", ("ValueError", "base64"), id="data-url-not-base64"),
    pytest.param(_data_url(b"hello, not an image"), ("ValueError",), id="not-an-image"),
    pytest.param(_data_url(_png(16, 16)[:40]), ("ValueError",), id="truncated-png"),
    pytest.param(_data_url(_png(60000, 60000, rows=b"\x00" * 16)), ("ValueError",), id="png-claiming-huge-size"),
    pytest.param(_data_url(b"GIF89a" + b"\x00" * 10, "image/gif"), ("ValueError",), id="truncated-gif"),
    pytest.param("{tmp}/empty.png", ("ValueError",), id="zero-byte-file"),
    pytest.param("{tmp}/missing.png", ("ValueError", "cannot read"), id="missing-file"),
    pytest.param("https://example.invalid/cat.png", ("ValueError", "turned off"), id="http-url-refused"),
    pytest.param("ftp://example.invalid/cat.png", ("ValueError", "scheme"), id="unsupported-scheme"),
    pytest.param(5, ("ValueError", "image_url"), id="url-int"),
    pytest.param(_data_url(_png(1, 1)), None, id="one-pixel-image"),
])
def test_bad_media_is_a_clear_error(media_pair, tmp_path, url, expected):
    (tmp_path / "empty.png").write_bytes(b"")
    if isinstance(url, str):
        url = url.format(tmp=tmp_path)
    kwargs = {"messages": image_message(url), "max_tokens": 2}
    out = run_case(scenarios.call_chat_with_media, *media_pair, kwargs, timeout=60)
    if expected is None:
        expect_returns(out)
    else:
        expect_raises(out, *expected)


@pytest.mark.parametrize("content, expected", [
    pytest.param([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "ogg"}}], ("ValueError", "format"),
                 id="audio-format-unknown"),
    pytest.param([{"type": "input_audio", "input_audio": {"data": "!!", "format": "wav"}}], ("ValueError", "base64"),
                 id="audio-corrupt-base64"),
    pytest.param([{"type": "image_url"}], ("ValueError", "image_url"), id="image-part-without-url"),
    pytest.param([{"type": "image_url", "image_url": {"url": _data_url(_png(8, 8))}}] * 40,
                 ("ContextOverflowError",), id="more-images-than-the-context-holds"),
])
def test_bad_media_parts_are_a_clear_error(media_pair, content, expected):
    kwargs = {"messages": [{"role": "user", "content": content}], "max_tokens": 2}
    expect_raises(run_case(scenarios.call_chat_with_media, *media_pair, kwargs, timeout=60), *expected)
