"""Bad tokenize / detokenize arguments and embedding inputs: a TypeError or ValueError that
says what was expected."""

from __future__ import annotations

from typing import Any

import pytest

from . import scenarios
from .runner import expect_raises, expect_returns, run_case


@pytest.mark.parametrize("method, args, expected", [
    pytest.param("tokenize", ("text",), ("TypeError", "bytes"), id="tokenize-str"),
    pytest.param("tokenize", (5,), ("TypeError", "bytes"), id="tokenize-int"),
    pytest.param("tokenize", (None,), ("TypeError", "bytes"), id="tokenize-none"),
    pytest.param("tokenize", ([1, 2],), ("TypeError", "bytes"), id="tokenize-list"),
    pytest.param("detokenize", ([10**6],), ("ValueError", "out of range"), id="detokenize-out-of-range"),
    pytest.param("detokenize", ([-1],), ("ValueError", "out of range"), id="detokenize-negative"),
    pytest.param("detokenize", ([2**40],), ("ValueError", "out of range"), id="detokenize-over-int32"),
    pytest.param("detokenize", (["a"],), ("TypeError", "token ids"), id="detokenize-strs"),
    pytest.param("detokenize", ("abc",), ("TypeError", "token ids"), id="detokenize-str"),
    pytest.param("detokenize", ([1.5],), ("TypeError", "token ids"), id="detokenize-floats"),
    pytest.param("detokenize", (None,), ("TypeError", "token ids"), id="detokenize-none"),
    pytest.param("detokenize", ([1, 2], [10**6]), ("ValueError", "out of range"), id="detokenize-prev-out-of-range"),
])
def test_a_bad_tokenizer_argument_is_a_clear_error(chat_model, method, args, expected):
    expect_raises(run_case(scenarios.call, chat_model, {}, method, args, {}), *expected)


@pytest.mark.parametrize("method, args", [
    pytest.param("tokenize", (b"\xff\xfe\x80 invalid utf-8",), id="tokenize-invalid-utf8"),
    pytest.param("tokenize", (bytearray(b"Hello"),), id="tokenize-bytearray"),
    pytest.param("tokenize", (b"a\x00b",), id="tokenize-nul"),
    pytest.param("tokenize", (b"word " * 100000,), id="tokenize-half-a-megabyte"),
    pytest.param("detokenize", ([],), id="detokenize-empty"),
])
def test_odd_but_valid_tokenizer_input_works(chat_model, method, args):
    expect_returns(run_case(scenarios.call, chat_model, {}, method, args, {}))


def embedding(name: str, input: Any, expected: tuple[str, ...] | None, **kwargs: Any) -> Any:
    return pytest.param(input, kwargs, expected, id=name)


@pytest.mark.parametrize("input, kwargs, expected", [
    embedding("empty-string", "", ("ValueError", "empty")),
    embedding("empty-list", [], ("ValueError", "empty")),
    embedding("list-with-empty-string", ["a", ""], ("ValueError", "empty")),
    embedding("empty-token-list", [[]], ("ValueError", "empty")),
    embedding("token-out-of-range", [[1, 10**6]], ("ValueError", "out of range")),
    embedding("token-negative", [-1, 5], ("ValueError", "out of range")),
    embedding("int", 5, ("TypeError", "input")),
    embedding("none", None, ("TypeError", "input")),
    embedding("dict", {"text": "a"}, ("TypeError", "input")),
    embedding("floats", [1.5, 2.5], ("TypeError", "input")),
    embedding("mixed", ["a", 5], ("TypeError", "input")),
    embedding("nested-too-deep", [[[1, 2]]], ("TypeError", "input")),
    embedding("too-long-without-truncate", "word " * 400, ("ValueError", "exceeds"), truncate=False),
    embedding("encoding-format-unknown", "a", ("ValueError", "encoding_format"), encoding_format="hex"),
    embedding("dimensions-0", "a", ("ValueError", "dimensions"), dimensions=0),
    embedding("dimensions-negative", "a", ("ValueError", "dimensions"), dimensions=-4),
    embedding("dimensions-too-many", "a", ("ValueError", "dimensions"), dimensions=10**6),
    embedding("dimensions-str", "a", ("TypeError", "dimensions"), dimensions="8"),
    embedding("lone-surrogate", "bad \ud800", ("ValueError", "surrogate")),
    embedding("stream-with-dimensions", "a", ("ValueError", "dimensions"), stream=True, dimensions=4),
    embedding("too-long-is-truncated", "word " * 400, None),
    embedding("invalid-utf8-bytes", b"\xff\xfe", None),
])
def test_create_embedding_input(embed_model, input, kwargs, expected):
    out = run_case(scenarios.call, embed_model, {}, "create_embedding", (input,), kwargs, "embed")
    if expected is None:
        assert expect_returns(out)["n"] == 1
    else:
        expect_raises(out, *expected)


@pytest.mark.parametrize("method, args, kwargs, expected", [
    pytest.param("embed", (None,), {}, ("TypeError", "input"), id="embed-none"),
    pytest.param("embed", ([],), {"stream": True}, ("ValueError", "empty"), id="embed-stream-empty"),
    pytest.param("embed", ([1.5],), {"stream": True}, ("TypeError", "input"),
                 id="embed-stream-float-item"),
    pytest.param("rerank", ("q", ["a", "b"]), {}, ("ValueError", "reranker"), id="rerank-without-a-reranker"),
])
def test_other_embedding_calls(embed_model, method, args, kwargs, expected):
    out = run_case(scenarios.call, embed_model, {}, method, args, kwargs, "embed")
    expect_raises(out, *expected)
