"""JSON Schema -> GBNF: `json_schema_to_gbnf`, and llama-cpp-python's `SchemaConverter`.

`json_schema_to_gbnf(schema)` covers objects (required and optional properties,
additionalProperties), arrays (items, prefixItems, minItems/maxItems), enum, const,
anyOf/oneOf/allOf, $ref/$defs (recursion included), string pattern/minLength/
maxLength, integer and number bounds (minimum, maximum, exclusive ones), and the formats date, time,
date-time and uuid. oneOf is read as anyOf (a grammar cannot rule out a value that
matches two options). JSON is generated compactly (at most one space after ':' and ',').
What cannot be converted raises GrammarError with the reason. Only local $refs are
followed: nothing is fetched over the network.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from allama.errors import GrammarError
from allama.gbnf import gbnf_literal, grammar_problem
from allama.numeric_ranges import integer_range, number_range
from allama.regex_gbnf import regex_to_gbnf

__all__ = ["BuiltinRule", "PRIMITIVE_RULES", "SchemaConverter", "json_schema_to_gbnf"]

_PRIMITIVES = {
    "ws": '" "?',
    "value": "object | array | string | number | boolean | null",
    "object": '"{" ws ( string ":" ws value ( "," ws string ":" ws value )* )? "}"',
    "array": '"[" ws ( value ( "," ws value )* )? "]"',
    "string": '"\\"" char* "\\""',
    "char": '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" [0-9a-fA-F]{4} )',
    "integer": '"-"? ( [0-9] | [1-9] [0-9]{1,15} )',
    "number": 'integer ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?',
    "boolean": '"true" | "false"',
    "null": '"null"',
}
_FORMATS = {
    "date": '[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] )',
    "time": '( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? '
            '( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )',
    "uuid": '[0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12}',
}



_LITERALS = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]')


def _rule_names(body: str) -> list[str]:
    """The rule names a GBNF rule body refers to (literals and character classes skipped)."""
    return re.findall(r"[A-Za-z][A-Za-z0-9-]*", _LITERALS.sub(" ", body))


class BuiltinRule:
    """A predefined rule: its GBNF body and the names of the rules it uses."""

    def __init__(self, content: str, deps: list[str] | None = None) -> None:
        self.content = content
        self.deps = list(deps or [])

    def __repr__(self) -> str:
        return f"BuiltinRule({self.content!r}, {self.deps!r})"


PRIMITIVE_RULES: dict[str, BuiltinRule] = {
    name: BuiltinRule(body, [dep for dep in dict.fromkeys(_rule_names(body)) if dep in _PRIMITIVES])
    for name, body in _PRIMITIVES.items()
}
"""The rules a converted grammar may use besides its own (ws, value, object, string, ...)."""


class _Converter:
    """Builds the rules for one schema (see json_schema_to_gbnf); `prop_order` ranks property
    names (unranked ones follow in schema order), `dotall` lets a pattern's `.` match line
    ends, `raw_pattern` matches patterns as raw text rather than inside a JSON string."""

    def __init__(self, root_schema: Any, prop_order: dict[str, int] | None = None, dotall: bool = False,
                 raw_pattern: bool = False, base_url: str = "") -> None:
        self.root_schema = root_schema
        self.prop_order = dict(prop_order or {})
        self.dotall = dotall
        self.raw_pattern = raw_pattern
        self.base_url = base_url
        self.rules: dict[str, str] = {}
        self.used: set[str] = set()
        self.refs: dict[str, str] = {}

    # --- rules --------------------------------------------------------------

    def primitive(self, name: str) -> str:
        self.used.add(name)
        return name

    def add(self, hint: str, body: str) -> str:
        """A rule with `body` (the existing one where a rule of that name has the same body)."""
        name = self._name(hint, body)
        self.rules[name] = body
        return name

    def reserve(self, hint: str) -> str:
        """A new rule name, to be given its body with `define` (for recursive rules)."""
        name = self._name(hint, None)
        self.rules[name] = ""
        return name

    def _name(self, hint: str, body: str | None) -> str:
        """`hint` as a rule name, numbered past names taken by other bodies."""
        base = re.sub(r"[^a-zA-Z0-9-]+", "-", hint).strip("-") or "r"
        candidate, k = base, 1
        while candidate in self.rules and (body is None or self.rules[candidate] != body):
            k += 1
            candidate = f"{base}-{k}"
        return candidate

    def define(self, name: str, body: str) -> None:
        self.rules[name] = body

    def grammar(self) -> str:
        """All rules, followed by the primitives they use (directly or through each other)."""
        needed: set[str] = set()
        frontier = list(self.rules.values())
        while frontier:
            for word in _rule_names(frontier.pop()):
                if word in _PRIMITIVES and word not in needed:
                    needed.add(word)
                    frontier.append(_PRIMITIVES[word])
        lines = [f"{name} ::= {body}" for name, body in self.rules.items()]
        lines += [f"{name} ::= {_PRIMITIVES[name]}" for name in sorted(needed) if name not in self.rules]
        return "\n".join(lines) + "\n"

    # --- schemas ------------------------------------------------------------

    def visit(self, schema: Any, hint: str) -> str:
        """A GBNF expression for `schema` (a rule name or an inline alternative in parentheses)."""
        if schema is True or schema == {}:
            return self.primitive("value")
        if schema is False:
            raise GrammarError("a false schema allows no value")
        if not isinstance(schema, dict):
            raise GrammarError(f"not a JSON schema: {schema!r}")
        if "$ref" in schema:
            if not isinstance(schema["$ref"], str):
                raise GrammarError(f"$ref must be a string, not {schema['$ref']!r}")
            return self.ref(schema["$ref"])
        if "const" in schema:
            return gbnf_literal(_json_text(schema["const"], "const"))
        if "enum" in schema:
            if not isinstance(schema["enum"], list):
                raise GrammarError(f"enum must be a list, not {type(schema['enum']).__name__}")
            values = [gbnf_literal(_json_text(v, "enum")) for v in schema["enum"]]
            if not values:
                raise GrammarError("an empty enum allows no value")
            return self.add(hint, " | ".join(values))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                if not isinstance(schema[key], list) or not schema[key]:
                    raise GrammarError(f"{key} must be a non-empty list of schemas")
                options = [self.visit(s, f"{hint}-{i}") for i, s in enumerate(schema[key])]
                return self.add(hint, " | ".join(options))
        if "allOf" in schema:
            return self.visit(self.merge(schema), hint)
        kind = schema.get("type")
        if isinstance(kind, list):
            options = [self.visit({**schema, "type": t}, f"{hint}-{t}") for t in kind]
            return self.add(hint, " | ".join(options))
        if kind is None:
            if "properties" in schema or "additionalProperties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                return self.primitive("value")
        if kind == "object":
            return self.object(schema, hint)
        if kind == "array":
            return self.array(schema, hint)
        if kind == "string":
            return self.string(schema, hint)
        if kind == "integer":
            return self.integer(schema, hint)
        if kind == "number":
            return self.number(schema, hint)
        if kind in ("boolean", "null"):
            return self.primitive(kind)
        raise GrammarError(f"unsupported JSON schema type: {kind!r}")

    def merge(self, schema: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        properties = dict(merged.get("properties", {}))
        required = list(merged.get("required", []))
        for part in schema["allOf"]:
            if "$ref" in part:
                part = self.resolve(part["$ref"])
            if "allOf" in part:
                part = self.merge(part)
            properties.update(part.get("properties", {}))
            required += [r for r in part.get("required", []) if r not in required]
            for key, value in part.items():
                if key not in ("properties", "required"):
                    merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
            merged.setdefault("type", "object")
        if required:
            merged["required"] = required
        return merged

    def resolve(self, ref: str) -> Any:
        if self.base_url and ref.startswith(self.base_url + "#"):
            ref = ref[len(self.base_url):]
        if not ref.startswith("#"):
            raise GrammarError(f"only local $ref are supported, not {ref!r}")
        node: Any = self.root_schema
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise GrammarError(f"$ref {ref!r} does not resolve")
            node = node[part]
        return node

    def ref(self, ref: str) -> str:
        if ref not in self.refs:
            name = self.add("ref-" + ref.rsplit("/", 1)[-1], "")  # reserve the name: refs may recurse
            self.refs[ref] = name
            self.rules[name] = self.visit(self.resolve(ref), name + "-body")
        return self.refs[ref]

    def object(self, schema: dict[str, Any], hint: str) -> str:
        properties: dict[str, Any] = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise GrammarError(f"properties must be an object, not {type(properties).__name__}")
        required_list = schema.get("required", [])
        if not isinstance(required_list, list) or not all(isinstance(r, str) for r in required_list):
            raise GrammarError("required must be a list of property names")
        required = set(required_list)
        unknown = required - set(properties)
        for name in unknown:  # required but undescribed: any value
            properties = {**properties, name: {}}
        extra = schema.get("additionalProperties", False if properties else True)
        ws = self.primitive("ws")
        pairs = []
        if self.prop_order:
            ranked = sorted(enumerate(properties), key=lambda p: (self.prop_order.get(p[1], len(self.prop_order)), p[0]))
            properties = {name: properties[name] for _, name in ranked}
        for name, sub in properties.items():
            value = self.visit(sub, f"{hint}-{name}")
            pairs.append((name in required, f'{gbnf_literal(json.dumps(name, ensure_ascii=False))} ":" {ws} {value}'))
        if extra is not False:
            value = self.visit({} if extra is True else extra, f"{hint}-extra")
            extra_pair = f'{self.primitive("string")} ":" {ws} {value}'
        # rest[i, first]: the rule for properties i.. given whether nothing has been written yet;
        # built from the last property back (no recursion: objects may have thousands).
        # "first" rules exist up to the first required property, where one is always written.
        n = len(pairs)
        last_first = next((i for i, (is_required, _) in enumerate(pairs) if is_required), n)
        rest: dict[tuple[int, bool], str] = {}
        for i in range(n, -1, -1):
            for first in (False, True):
                if (first and i > last_first) or (not first and i == 0):
                    continue
                if i == n:
                    if extra is False:
                        body = ""
                    elif first:
                        body = f'( {extra_pair} ( "," {ws} {extra_pair} )* )?'
                    else:
                        body = f'( "," {ws} {extra_pair} )*'
                else:
                    is_required, pair = pairs[i]
                    lead = "" if first else f'"," {ws} '
                    take = f"{lead}{pair} {rest[(i + 1, False)]}".strip()
                    body = take if is_required else f"( {take} ) | ( {rest[(i + 1, first)]} )"
                rest[(i, first)] = self.add(f"{hint}-rest{i}{'f' if first else ''}", body or '""')

        return self.add(hint, f'"{{" {ws} {rest[(0, True)]} "}}"')

    def array(self, schema: dict[str, Any], hint: str) -> str:
        ws = self.primitive("ws")
        if "prefixItems" in schema:
            if not isinstance(schema["prefixItems"], list):
                raise GrammarError("prefixItems must be a list of schemas")
            items = [self.visit(s, f"{hint}-{i}") for i, s in enumerate(schema["prefixItems"])]
            body = f' "," {ws} '.join(items)
            return self.add(hint, f'"[" {ws} {body} "]"' if items else '"[" "]"')
        item = self.visit(schema.get("items", {}), f"{hint}-item")
        low, high = _count(schema, "minItems", 0), _count(schema, "maxItems", None)
        if high is not None and high < low:
            raise GrammarError("maxItems is smaller than minItems")
        if high is not None and int(high) == 0:
            return self.add(hint, '"[" "]"')
        more_low = max(low - 1, 0)
        more = f'( "," {ws} {item} )' + (f"{{{more_low},{int(high) - 1}}}" if high is not None
                                             else (f"{{{more_low},}}" if more_low else "*"))
        seq = f"{item} {more}"
        return self.add(hint, f'"[" {ws} {seq} "]"' if low > 0 else f'"[" {ws} ( {seq} )? "]"')

    def string(self, schema: dict[str, Any], hint: str) -> str:
        fmt = schema.get("format")
        if fmt in _FORMATS:
            return self.add(hint, f'"\\"" {_FORMATS[fmt]} "\\""')
        if fmt == "date-time":
            return self.add(hint, f'"\\"" {_FORMATS["date"]} "T" {_FORMATS["time"]} "\\""')
        if "pattern" in schema:
            if not isinstance(schema["pattern"], str):
                raise GrammarError(f"pattern must be a string, not {type(schema['pattern']).__name__}")
            expression = regex_to_gbnf(schema["pattern"], self.dotall, self.raw_pattern)
            return self.add(hint, expression if self.raw_pattern else f'"\\"" {expression} "\\""')
        low, high = _count(schema, "minLength", 0), _count(schema, "maxLength", None)
        if high is not None and high < low:
            raise GrammarError("maxLength is smaller than minLength")
        if low == 0 and high is None:
            return self.primitive("string")
        char = self.primitive("char")
        reps = f"{{{low},{int(high)}}}" if high is not None else f"{{{low},}}"
        return self.add(hint, f'"\\"" {char}{reps} "\\""')

    def integer(self, schema: dict[str, Any], hint: str) -> str:
        _check_bounds(schema)
        low, high = schema.get("minimum"), schema.get("maximum")
        low = None if low is None else math.ceil(low)
        high = None if high is None else math.floor(high)
        if schema.get("exclusiveMinimum") is not None:
            above = math.floor(schema["exclusiveMinimum"]) + 1
            low = above if low is None else max(low, above)
        if schema.get("exclusiveMaximum") is not None:
            below = math.ceil(schema["exclusiveMaximum"]) - 1
            high = below if high is None else min(high, below)
        if low is None and high is None:
            return self.primitive("integer")
        if low is not None and high is not None and high < low:
            raise GrammarError("maximum is smaller than minimum")
        return self.add(hint, integer_range(low, high))

    def number(self, schema: dict[str, Any], hint: str) -> str:
        if not _check_bounds(schema):
            return self.primitive("number")
        low, low_incl = _binding_bound(schema, "minimum")
        high, high_incl = _binding_bound(schema, "maximum")
        body = number_range(self, hint, low, low_incl, high, high_incl)
        if body is None:
            raise GrammarError("no number satisfies minimum/maximum")
        return self.add(hint, body)


_BOUNDS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")


def _check_bounds(schema: dict[str, Any]) -> bool:
    """Whether the schema has numeric bounds; each must be a finite number."""
    bounds = [schema.get(k) for k in _BOUNDS]
    for b in bounds:
        if b is not None and (not isinstance(b, (int, float)) or isinstance(b, bool) or not math.isfinite(b)):
            raise GrammarError(f"minimum, maximum and their exclusive forms must be finite numbers, not {b!r}")
    return any(b is not None for b in bounds)


def _count(schema: dict[str, Any], key: str, default: int | None) -> int | None:
    """A length bound (minItems, maxLength, ...): a non-negative integer."""
    value = schema.get(key, default)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise GrammarError(f"{key} must be a non-negative integer, not {value!r}")
    return value


def _json_text(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise GrammarError(f"{what} holds a value that is not JSON: {exc}") from None


def _decimal(value: float | int) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _binding_bound(schema: dict[str, Any], side: str) -> tuple[Decimal | None, bool]:
    """The binding bound on one side ("minimum" or "maximum") and whether it is inclusive."""
    exclusive = "exclusiveMinimum" if side == "minimum" else "exclusiveMaximum"
    options = [(_decimal(schema[key]), key == side) for key in (side, exclusive) if schema.get(key) is not None]
    if not options:
        return None, True
    if side == "minimum":
        return max(options, key=lambda o: (o[0], not o[1]))
    return min(options, key=lambda o: (o[0], o[1]))


def json_schema_to_gbnf(schema: dict[str, Any] | bool | str, prop_order: Sequence[str] | None = None) -> str:
    """A GBNF grammar whose root matches JSON documents valid against `schema` (a dict or
    JSON text); `prop_order` names properties to write first, in that order."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise GrammarError(f"the schema is not valid JSON: {exc}") from exc
    converter = _Converter(schema, {name: i for i, name in enumerate(prop_order or ())})
    try:
        root = converter.visit(schema, "root-value")
    except RecursionError:
        raise GrammarError("the schema nests too deeply to convert") from None
    except (AttributeError, TypeError, KeyError) as exc:  # a keyword whose value has the wrong shape
        raise GrammarError(f"the schema is malformed: {type(exc).__name__}: {exc}") from None
    converter.rules = {"root": root, **converter.rules}
    grammar = converter.grammar()
    problem = grammar_problem(grammar, "root")
    if problem:
        raise GrammarError(f"could not convert the schema: {problem}")
    return grammar


ANY_JSON_GBNF = json_schema_to_gbnf({})
"""Any JSON value (llama.cpp's json.gbnf, the `JSON_GBNF` constant, allows objects only)."""


class SchemaConverter:
    """llama-cpp-python's converter interface: `resolve_refs(schema, url)`, then
    `visit(schema, name)` for each rule wanted (name "" makes `root`), then `format_grammar()`.

    `prop_order` ranks property names (a dict name -> rank, or a list); `allow_fetch` is
    accepted for compatibility, but only refs inside the schema (or under `url`) resolve;
    `dotall` and `raw_pattern` shape how string patterns convert.
    """

    def __init__(self, *, prop_order: Mapping[str, int] | Sequence[str] | None = None, allow_fetch: bool = False,
                 dotall: bool = False, raw_pattern: bool = False) -> None:
        if prop_order is not None and not isinstance(prop_order, Mapping):
            prop_order = {name: i for i, name in enumerate(prop_order)}
        self.allow_fetch = allow_fetch
        self._converter = _Converter(None, prop_order, dotall=dotall, raw_pattern=raw_pattern)

    @property
    def prop_order(self) -> dict[str, int]:
        return self._converter.prop_order

    @property
    def dotall(self) -> bool:
        return self._converter.dotall

    @property
    def raw_pattern(self) -> bool:
        return self._converter.raw_pattern

    def resolve_refs(self, schema: Any, url: str) -> Any:
        """Takes `schema` as the document refs resolve in (`url` names it, so `url#/...`
        refs are local) and returns it; a ref to another document raises GrammarError."""
        self._converter.root_schema = schema
        self._converter.base_url = url
        pending = [schema]
        while pending:
            node = pending.pop()
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str) and not ref.startswith("#") and not ref.startswith(url + "#"):
                    raise GrammarError(f"only refs inside the schema are followed, not {ref!r}"
                                       + (" (allama fetches nothing)" if self.allow_fetch else ""))
                pending.extend(node.values())
            elif isinstance(node, list):
                pending.extend(node)
        return schema

    def visit(self, schema: Any, name: str) -> str:
        """Adds a rule `name` ("" or "root": the root rule) matching `schema`; returns its name."""
        rule = name or "root"
        if self._converter.root_schema is None:
            self._converter.root_schema = schema
        try:
            expression = self._converter.visit(schema, "root-value" if rule == "root" else rule)
        except RecursionError:
            raise GrammarError("the schema nests too deeply to convert") from None
        except (AttributeError, TypeError, KeyError) as exc:
            raise GrammarError(f"the schema is malformed: {type(exc).__name__}: {exc}") from None
        if expression != rule:
            self._converter.rules = {rule: expression, **{k: v for k, v in self._converter.rules.items() if k != rule}}
        return rule

    def format_grammar(self) -> str:
        """The GBNF text of the rules visited so far and the predefined rules they use."""
        return self._converter.grammar()
