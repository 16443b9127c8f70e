"""The regular expressions of JSON Schema `pattern`s as GBNF (the subset schemas use)."""

from __future__ import annotations

import re

from allama.errors import GrammarError
from allama.gbnf import gbnf_literal

_REGEX_ESCAPES = {"d": "[0-9]", "w": "[a-zA-Z0-9_]", "s": "[ \\t\\n]", "D": "[^0-9]", "W": "[^a-zA-Z0-9_]"}


def regex_to_gbnf(pattern: str, dotall: bool = False, raw: bool = False) -> str:
    """Translates the regex subset JSON schemas use (classes, groups, alternation,
    quantifiers, escapes; anchors are implied) into a GBNF expression for the inside of a
    JSON string (`raw`: for the text itself; `dotall`: `.` matches line ends too)."""
    any_char = '[^"\\\\\\x00-\\x1F]' if not raw else ("[\\U00000000-\\U0010FFFF]" if dotall else "[^\\x0A\\x0D]")
    pos = 0

    def fail(why: str) -> GrammarError:
        return GrammarError(f"unsupported pattern {pattern!r}: {why}")

    def parse_alternation() -> str:
        nonlocal pos
        options = [parse_sequence()]
        while pos < len(pattern) and pattern[pos] == "|":
            pos += 1
            options.append(parse_sequence())
        return " | ".join(o or '""' for o in options)

    def parse_sequence() -> str:
        nonlocal pos
        items: list[str] = []
        while pos < len(pattern) and pattern[pos] not in "|)":
            atom = parse_atom()
            if atom is None:
                continue
            items.append(atom + parse_quantifier())
        return " ".join(items)

    def parse_quantifier() -> str:
        nonlocal pos
        if pos >= len(pattern):
            return ""
        ch = pattern[pos]
        if ch in "*+?":
            pos += 1
            if pos < len(pattern) and pattern[pos] == "?":
                pos += 1  # lazy quantifiers generate the same language
            return ch
        if ch == "{":
            end = pattern.find("}", pos)
            if end == -1:
                raise fail("unclosed {")
            body = pattern[pos + 1:end]
            bounds = re.fullmatch(r"(\d+)(,(\d*))?", body)
            if not bounds or (bounds[3] and int(bounds[3]) < int(bounds[1])):
                raise fail(f"bad repetition {{{body}}}")
            pos = end + 1
            return "{" + body + "}"
        return ""

    def parse_atom() -> str | None:
        nonlocal pos
        ch = pattern[pos]
        if ch in "^$":
            pos += 1
            return None
        if ch == "(":
            pos += 1
            if pattern.startswith("?:", pos):
                pos += 2
            elif pattern.startswith("?", pos):
                raise fail("lookarounds and named groups are not supported")
            inner = parse_alternation()
            if pos >= len(pattern) or pattern[pos] != ")":
                raise fail("unbalanced parenthesis")
            pos += 1
            return f"( {inner} )"
        if ch == "[":
            end = pos + 1
            if end < len(pattern) and pattern[end] == "^":
                end += 1
            if end < len(pattern) and pattern[end] == "]":
                end += 1
            while end < len(pattern) and pattern[end] != "]":
                end += 2 if pattern[end] == "\\" else 1
            if end >= len(pattern):
                raise fail("unclosed [")
            body = pattern[pos + 1:end]
            pos = end + 1
            body = body.replace('"', '\\"')
            for key, cls in _REGEX_ESCAPES.items():
                if not cls.startswith("[^"):
                    body = body.replace("\\" + key, cls[1:-1])
            return f"[{body}]"
        if ch == ".":
            pos += 1
            return any_char
        if ch == "\\":
            if pos + 1 >= len(pattern):
                raise fail("trailing backslash")
            nxt = pattern[pos + 1]
            pos += 2
            if nxt in _REGEX_ESCAPES:
                return _REGEX_ESCAPES[nxt]
            return gbnf_literal({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
        if ch in "*+?{":
            raise fail(f"nothing to repeat at {pos}")
        pos += 1
        if ch == '"' and not raw:
            return '"\\\\\\""'  # a quote inside a JSON string is escaped
        return gbnf_literal(ch)

    expression = parse_alternation()
    if pos != len(pattern):
        raise fail(f"unexpected {pattern[pos]!r} at {pos}")
    return f"( {expression} )"
