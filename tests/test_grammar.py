"""LlamaGrammar and the JSON Schema converter, checked by generating with the tiny
random-weight model under the grammar and validating what comes out."""

from __future__ import annotations

import json

import anyio
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allama.errors import GrammarError
from allama.grammar import JSON_GBNF, LlamaGrammar, json_schema_to_gbnf

from .json_prefix import is_json_prefix


@pytest.fixture(scope="module")
def llm_options():
    return dict(n_ctx=512, n_parallel=8, n_keep=0)


def generate(llm, grammar: str, seed: int, max_tokens: int = 96) -> dict:
    async def run():
        return await llm.create_completion("JSON:", grammar=grammar, max_tokens=max_tokens, temperature=1.0,
                                           seed=seed)

    return anyio.run(run)["choices"][0]


def test_from_string_checks_the_grammar():
    assert LlamaGrammar.from_string('root ::= "a"').grammar == 'root ::= "a"'
    with pytest.raises(GrammarError, match="expecting"):
        LlamaGrammar.from_string("root ::= (")
    with pytest.raises(GrammarError, match="no rule named 'root'"):
        LlamaGrammar.from_string('start ::= "a"')


def test_from_file_and_from_json_schema(tmp_path):
    path = tmp_path / "g.gbnf"
    path.write_text('root ::= "yes" | "no"\n')
    assert "yes" in str(LlamaGrammar.from_file(path))
    grammar = LlamaGrammar.from_json_schema('{"type": "boolean"}')
    assert "true" in grammar.grammar


SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer",
     "minimum": 0, "maximum": 120}}, "required": ["name", "age"]},
    {"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"type": "null"}}, "required": []},
    {"type": "array", "items": {"enum": ["red", "green", 3, None]}, "minItems": 1, "maxItems": 4},
    {"anyOf": [{"type": "integer"}, {"const": "none"}]},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date"},
     "at": {"type": "string", "format": "time"}, "id": {"type": "string", "format": "uuid"}},
     "required": ["when", "at", "id"]},
    {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
    {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer", "minimum": 0, "maximum": 9},
     "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}, "required": ["v", "next"]}},
     "$ref": "#/$defs/node"},
    {"allOf": [{"type": "object", "properties": {"x": {"type": "integer", "minimum": 1, "maximum": 3}},
               "required": ["x"]},
               {"properties": {"y": {"type": "boolean"}}, "required": ["y"]}]},
    {"type": "array", "prefixItems": [{"type": "boolean"}, {"type": "string", "maxLength": 3}]},
    {"type": "object", "properties": {"k": {"type": "integer", "minimum": 0, "maximum": 5}},
     "required": ["k"], "additionalProperties": {"type": "boolean"}},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_generated_json_validates_against_the_schema(llm, schema):
    grammar = json_schema_to_gbnf(schema)
    finished = 0
    for seed in range(6):
        choice = generate(llm, grammar, seed)
        if choice["finish_reason"] == "stop":
            finished += 1
            jsonschema.validate(json.loads(choice["text"]), schema)
    assert finished >= 1  # at least one complete document was checked


def test_json_grammar_produces_json(llm):
    """A generation that stops is one JSON document; one cut by max_tokens is the start of one."""
    finished = 0
    for seed in range(4):
        choice = generate(llm, JSON_GBNF, seed, max_tokens=200)
        if choice["finish_reason"] == "stop":
            finished += 1
            json.loads(choice["text"])
        else:
            assert is_json_prefix(choice["text"]), choice["text"]
    assert finished >= 1  # at least one complete document was parsed


@pytest.mark.parametrize("schema, reason", [
    ({"type": "object", "properties": {"a": False}, "required": ["a"]}, "false schema"),
    ({"type": "string", "pattern": "(?=lookahead)"}, "lookarounds"),
    ({"$ref": "#/$defs/missing"}, "does not resolve"),
    ({"$ref": "https://example.com/schema.json"}, "only local"),
    ({"type": "integer", "minimum": 5, "maximum": 1}, "maximum is smaller"),
    ({"type": "array", "minItems": 3, "maxItems": 1}, "maxItems"),
    ({"type": "tuple"}, "unsupported JSON schema type"),
    ("{not json", "not valid JSON"),
])
def test_unconvertible_schemas_raise_grammar_error(schema, reason):
    with pytest.raises(GrammarError, match=reason):
        json_schema_to_gbnf(schema)


def test_response_format_json_schema_in_chat(llm):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}

    async def run():
        return await llm.create_chat_completion(
            [{"role": "user", "content": "Answer in JSON"}], max_tokens=40, temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}})

    out = anyio.run(run)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop"
    jsonschema.validate(json.loads(choice["message"]["content"]), schema)


# --- property test: generated schemas, constrained output validates -------------------

def _bounded(kind: str, low, high) -> dict:
    schema = {"type": kind}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = low + abs(high) if low is not None else high
    return schema


leaf = st.one_of(
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.builds(_bounded, st.just("integer"), st.one_of(st.none(), st.integers(-10**6, 10**6)),
              st.one_of(st.none(), st.integers(-10**6, 10**6))),
    st.builds(_bounded, st.just("number"), st.one_of(st.none(), st.floats(-1e4, 1e4).map(lambda x: round(x, 2))),
              st.one_of(st.none(), st.floats(-1e4, 1e4).map(lambda x: round(x, 2)))),
    st.builds(lambda lo, extra: {"type": "string", "minLength": lo, "maxLength": lo + extra},
              st.integers(0, 3), st.integers(0, 4)),
    st.builds(lambda p: {"type": "string", "pattern": p},
              st.sampled_from(["^[a-c]{2,4}$", "^\\d{3}-\\d{2}$", "^(ab|cd)x?$", "^[A-Z][a-z]?$"])),
    st.builds(lambda vals: {"enum": vals}, st.lists(st.one_of(st.text("abc", max_size=3), st.integers(0, 9)),
                                                   min_size=1, max_size=4, unique=True)),
    st.builds(lambda v: {"const": v}, st.one_of(st.integers(-5, 5), st.text("xy", max_size=2), st.booleans())),
    st.builds(lambda fmt: {"type": "string", "format": fmt},
              st.sampled_from(["date", "time", "date-time", "uuid"])),
)
schemas = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda props, req, extra: {"type": "object", "properties": props, "additionalProperties": extra,
                                             "required": [k for k, r in zip(props, req) if r]},
                  st.dictionaries(st.text("xyz", min_size=1, max_size=3), inner, min_size=1, max_size=3),
                  st.lists(st.booleans(), min_size=3, max_size=3), st.just(False)),
        st.builds(lambda item, lo, extra: {"type": "array", "items": item, "minItems": lo, "maxItems": lo + extra},
                  inner, st.integers(0, 2), st.integers(0, 2)),
        st.builds(lambda options: {"anyOf": options}, st.lists(inner, min_size=1, max_size=3)),
        # oneOf as used in practice, a tagged union (a grammar cannot forbid matching two overlapping options)
        st.builds(lambda options: {"oneOf": [{"type": "object", "properties": {"kind": {"const": i}, "v": o},
                                              "required": ["kind", "v"]} for i, o in enumerate(options)]},
                  st.lists(inner, min_size=1, max_size=2)),
    ),
    max_leaves=5,
)

_outcomes: list[str] = []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=schemas, seed=st.integers(0, 10_000))
def test_property_constrained_output_validates(llm, schema, seed):
    """Output that stops is a valid document; output cut by max_tokens is the start of one:
    the same generation given room enough ends in a document that validates."""
    choice = generate(llm, json_schema_to_gbnf(schema), seed, max_tokens=160)
    _outcomes.append(choice["finish_reason"])
    if choice["finish_reason"] == "stop":
        jsonschema.validate(json.loads(choice["text"]), schema)
        return
    assert is_json_prefix(choice["text"]), choice["text"]
    longer = generate(llm, json_schema_to_gbnf(schema), seed, max_tokens=400)
    assert longer["text"].startswith(choice["text"])
    if longer["finish_reason"] == "stop":
        jsonschema.validate(json.loads(longer["text"]), schema)


def test_json_prefix_recogniser():
    for good in ['{"a": [1, 2', '"abc', '{"k": tr', "[", '{"x": -1.5e', '{"s": "\\u00', "12"]:
        assert is_json_prefix(good), good
    for bad in ['{"a" 1', "]", '{"a": [1,, 2', "tx", '{"a": 1}}', '{1: 2}']:
        assert not is_json_prefix(bad), bad


def test_property_run_mostly_finishes(llm):
    # runs after the property test in file order
    assert _outcomes, "the property test did not run"
    assert len(_outcomes) >= 20
    assert _outcomes.count("stop") >= len(_outcomes) / 2, _outcomes


# --- llama-cpp-python's grammar interface ------------------------------------------

import allama.grammar as grammar_module  # noqa: E402
from allama.grammar import LLAMA_GRAMMAR_DEFAULT_ROOT, BuiltinRule, SchemaConverter  # noqa: E402

GRAMMAR_CONSTANTS = {"ARITHMETIC_GBNF": "arithmetic", "C_GBNF": "c", "CHESS_GBNF": "chess",
                     "JAPANESE_GBNF": "japanese", "JSON_ARR_GBNF": "json_arr", "JSON_GBNF": "json",
                     "LIST_GBNF": "list"}


@pytest.mark.parametrize("name", sorted(GRAMMAR_CONSTANTS))
def test_grammar_constants_are_llama_cpps_files_and_parse(name):
    text = getattr(grammar_module, name)
    path = grammar_module.grammar_file(GRAMMAR_CONSTANTS[name] + ".gbnf")
    assert text == path.read_text(encoding="utf-8")
    assert LlamaGrammar.from_string(text).grammar == text


def test_grammar_files_are_found_in_the_package_before_the_vendor_tree(tmp_path, monkeypatch):
    import allama

    shipped = tmp_path / "grammars"
    shipped.mkdir()
    (shipped / "list.gbnf").write_text('root ::= "shipped"\n')
    monkeypatch.setattr(allama, "__path__", [str(tmp_path), *allama.__path__])
    assert grammar_module.grammar_file("list.gbnf") == shipped / "list.gbnf"
    assert grammar_module.grammar_file("json.gbnf").name == "json.gbnf"  # falls back
    with pytest.raises(AttributeError):
        grammar_module.NO_SUCH_GBNF


def test_grammar_keyword_constructor_as_llama_cpp_python():
    grammar = LlamaGrammar(_grammar='root ::= "a"')
    assert grammar._grammar == 'root ::= "a"' and grammar._root == LLAMA_GRAMMAR_DEFAULT_ROOT == "root"
    with pytest.raises(GrammarError):
        LlamaGrammar(_grammar="root ::= (")
    with pytest.raises(TypeError):
        LlamaGrammar('root ::= "a"', _grammar='root ::= "b"')


TREE = """
leaf ::= "."
node ::= leaf | "(" node node ")"
root ::= node
"""


def test_llama_cpp_python_grammar_from_string():
    assert LlamaGrammar.from_string(TREE).grammar == TREE


def test_llama_cpp_python_composed_pydantic_grammar():
    schema = {
        "$defs": {"A": {"properties": {"a": {"title": "A", "type": "integer"}}, "required": ["a"], "title": "A",
                        "type": "object"}},
        "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"title": "B", "type": "integer"}},
        "required": ["a", "b"], "title": "B", "type": "object",
    }
    grammar = LlamaGrammar.from_json_schema(json.dumps(schema))
    assert grammar.grammar.startswith("root ::= ")


def test_llama_cpp_python_grammar_anyof():
    schema = {
        "properties": {
            "temperature": {"description": "The temperature mentioned", "type": "number"},
            "unit": {"anyOf": [{"description": "Unit for temperature", "enum": ["celsius", "fahrenheit"],
                                "type": "string"}, {"type": "null"}]},
        },
        "type": "object",
    }
    grammar = LlamaGrammar.from_json_schema(json.dumps(schema))
    assert '"\\"celsius\\""' in grammar.grammar and "null" in grammar.grammar


PAIR = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "null"}},
        "required": ["a", "b", "c"]}


def _property_order(grammar: str) -> list[str]:
    import re

    lines = dict(line.split(" ::= ", 1) for line in grammar.strip().splitlines())
    return re.findall(r'"\\"(\w)\\""', " ".join(lines[k] for k in sorted(lines) if k.startswith("root-value-rest")))


def test_schema_converter_orders_properties_by_prop_order():
    converter = SchemaConverter(prop_order={"c": 0, "b": 1}, allow_fetch=False, dotall=False, raw_pattern=False)
    schema = converter.resolve_refs(PAIR, "stdin")
    assert converter.visit(schema, "") == "root"
    grammar = converter.format_grammar()
    LlamaGrammar.from_string(grammar)
    assert _property_order(grammar) == ["c", "b", "a"]
    assert _property_order(json_schema_to_gbnf(PAIR)) == ["a", "b", "c"]
    assert _property_order(json_schema_to_gbnf(PAIR, prop_order=["b"])) == ["b", "a", "c"]


def test_schema_converter_follows_refs_under_its_url_only():
    converter = SchemaConverter(prop_order={}, allow_fetch=True, dotall=False, raw_pattern=False)
    schema = {"$defs": {"x": {"type": "boolean"}}, "$ref": "file.json#/$defs/x"}
    converter.visit(converter.resolve_refs(schema, "file.json"), "")
    assert "true" in converter.format_grammar()
    with pytest.raises(GrammarError, match="fetches nothing"):
        converter.resolve_refs({"$ref": "https://example.com/s.json"}, "file.json")


def test_schema_converter_raw_patterns_and_dotall():
    def pattern_grammar(**options) -> str:
        converter = SchemaConverter(prop_order={}, allow_fetch=False, **options)
        converter.visit({"type": "string", "pattern": "^a.b$"}, "")
        grammar = converter.format_grammar()
        LlamaGrammar.from_string(grammar)
        return grammar

    assert '"\\""' in pattern_grammar(dotall=False, raw_pattern=False)  # inside a JSON string
    raw = pattern_grammar(dotall=False, raw_pattern=True)
    assert '"\\""' not in raw and "[^\\x0A\\x0D]" in raw
    assert "[\\U00000000-\\U0010FFFF]" in pattern_grammar(dotall=True, raw_pattern=True)


def test_builtin_rules_name_their_dependencies():
    from allama.json_schema import PRIMITIVE_RULES

    assert isinstance(PRIMITIVE_RULES["number"], BuiltinRule)
    assert PRIMITIVE_RULES["number"].deps == ["integer"]
    assert set(PRIMITIVE_RULES["value"].deps) == {"object", "array", "string", "number", "boolean", "null"}
    rule = BuiltinRule('"x"', ["y"])
    assert rule.content == '"x"' and rule.deps == ["y"]
