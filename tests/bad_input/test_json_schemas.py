"""Bad and pathological JSON schemas through json_schema_to_gbnf (what response_format,
tools and the server's json_schema use): a GrammarError with the reason, never a
RecursionError, a hang or a grammar that crashes the parser."""

from __future__ import annotations

import math
from typing import Any

import pytest

from . import scenarios
from .runner import expect_raises, expect_returns, run_case


Nested = scenarios.Nested


def nested(depth: int, wrap: Any) -> Any:
    schema: Any = {"type": "string"}
    for _ in range(depth):
        schema = wrap(schema)
    return schema


BAD = [
    ("deep-arrays", Nested("array", 1000), "deep"),
    ("deep-objects", Nested("object", 1000), "deep"),
    ("deep-any-of", Nested("anyOf", 1000), "deep"),
    ("deep-all-of", Nested("allOf", 1000), "deep"),
    ("ref-chain-2000", Nested("refs", 2000), "deep"),
    ("ref-missing", {"$ref": "#/$defs/nope"}, "does not resolve"),
    ("ref-remote", {"$ref": "https://example.com/schema.json"}, "local"),
    ("ref-not-a-string", {"$ref": 5}, "$ref"),
    ("all-of-ref-missing", {"allOf": [{"$ref": "#/$defs/x"}]}, "does not resolve"),
    ("not-a-schema-int", 5, "not a JSON schema"),
    ("not-a-schema-list", [{"type": "string"}], "not a JSON schema"),
    ("not-a-schema-none", None, "not a JSON schema"),
    ("invalid-json-text", "{not json", "not valid JSON"),
    ("false-schema", False, "allows no value"),
    ("type-unknown", {"type": "decimal"}, "unsupported"),
    ("type-not-a-string", {"type": 5}, "unsupported"),
    ("type-list-with-unknown", {"type": ["string", "decimal"]}, "unsupported"),
    ("enum-empty", {"enum": []}, "empty enum"),
    ("enum-not-a-list", {"enum": "abc"}, "enum"),
    ("enum-nan", {"enum": [math.nan]}, "enum"),
    ("const-nan", {"const": math.inf}, "const"),
    ("any-of-empty", {"anyOf": []}, "anyOf"),
    ("any-of-not-a-list", {"anyOf": {"type": "string"}}, "anyOf"),
    ("properties-not-a-dict", {"type": "object", "properties": [{"a": {}}]}, "properties"),
    ("property-schema-int", {"type": "object", "properties": {"a": 5}}, "not a JSON schema"),
    ("required-not-a-list", {"type": "object", "properties": {"a": {}}, "required": "a"}, "required"),
    ("additional-properties-int", {"type": "object", "additionalProperties": 5}, "not a JSON schema"),
    ("items-int", {"type": "array", "items": 5}, "not a JSON schema"),
    ("prefix-items-not-a-list", {"type": "array", "prefixItems": {"type": "string"}}, "prefixItems"),
    ("min-items-str", {"type": "array", "minItems": "two"}, "minItems"),
    ("min-items-negative", {"type": "array", "minItems": -1}, "minItems"),
    ("min-items-huge", {"type": "array", "minItems": 10**9}, "repetitions"),
    ("max-items-below-min-items", {"type": "array", "minItems": 3, "maxItems": 1}, "maxItems"),
    ("min-length-huge", {"type": "string", "minLength": 10**9}, "repetitions"),
    ("max-length-below-min-length", {"type": "string", "minLength": 5, "maxLength": 2}, "maxLength"),
    ("min-length-float", {"type": "string", "minLength": 1.5}, "minLength"),
    ("pattern-unbalanced", {"type": "string", "pattern": "(ab"}, "pattern"),
    ("pattern-lookahead", {"type": "string", "pattern": "(?=a)b"}, "not supported"),
    ("pattern-deep-groups", {"type": "string", "pattern": "(" * 5000 + "a" + ")" * 5000}, "deep"),
    ("pattern-huge-repetition", {"type": "string", "pattern": "a{1000000}"}, "repetitions"),
    ("pattern-repetition-max-below-min", {"type": "string", "pattern": "a{5,2}"}, "bad repetition"),
    ("pattern-not-a-string", {"type": "string", "pattern": 5}, "pattern"),
    ("integer-minimum-above-maximum", {"type": "integer", "minimum": 5, "maximum": 1}, "maximum"),
    ("integer-minimum-nan", {"type": "integer", "minimum": math.nan}, "minimum"),
    ("integer-minimum-str", {"type": "integer", "minimum": "5"}, "minimum"),
    ("integer-maximum-inf", {"type": "integer", "maximum": math.inf}, "maximum"),
    ("number-minimum-nan", {"type": "number", "minimum": math.nan}, "finite"),
    ("number-bounds-empty", {"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1}, "no number"),
]

ACCEPTED = [
    ("ref-to-root-recursion", {"type": "object", "properties": {"child": {"$ref": "#"}}}),
    ("ref-loop-through-defs", {"$defs": {"a": {"type": "array", "items": {"$ref": "#/$defs/b"}},
                                         "b": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}},
                               "$ref": "#/$defs/a"}),
    ("huge-enum", {"enum": [f"value-{i}" for i in range(20000)]}),
    ("many-properties", {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(2000)}}),
    ("odd-property-names", {"type": "object", "properties": {'"quoted"\n': {}, "\\": {}, "\x00": {}, "💥": {}},
                            "required": ['"quoted"\n']}),
    ("unsupported-format-is-a-string", {"type": "string", "format": "email"}),
    ("unknown-keywords-are-ignored", {"type": "string", "not": {"const": "a"}, "if": {}, "then": {}}),
    ("deep-but-reasonable", nested(40, lambda s: {"type": "array", "items": s})),
    # llama.cpp enforces repetition bounds up to 2000; a larger maximum is read as none
    ("max-items-huge", {"type": "array", "maxItems": 10**12}),
    ("max-length-huge", {"type": "string", "maxLength": 10**12}),
    ("true-schema", True),
]


@pytest.mark.parametrize("schema, fragment", [pytest.param(s, f, id=i) for i, s, f in BAD])
def test_a_bad_schema_is_a_grammar_error(schema, fragment):
    expect_raises(run_case(scenarios.plain, "allama.grammar.json_schema_to_gbnf", (schema,)), "GrammarError", fragment)


@pytest.mark.parametrize("schema", [pytest.param(s, id=i) for i, s in ACCEPTED])
def test_an_odd_but_valid_schema_converts(schema):
    assert isinstance(expect_returns(run_case(scenarios.plain, "allama.grammar.json_schema_to_gbnf", (schema,))), str)


@pytest.mark.parametrize("schema, expected", [
    pytest.param(Nested("array", 1000), ("GrammarError", "deep"), id="deep"),
    pytest.param({"$ref": "#"}, ("GrammarError",), id="ref-to-itself"),
    pytest.param({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
                 ("GrammarError",), id="ref-cycle-without-content"),
    pytest.param({"type": "string", "pattern": "(" * 3000 + "a" + ")" * 3000}, ("GrammarError",), id="deep-pattern"),
])
def test_a_bad_response_format_schema_fails_the_request_only(chat_model, schema, expected):
    kwargs = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
              "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    expect_raises(run_case(scenarios.call, chat_model, {}, "create_chat_completion", (), kwargs), *expected)
