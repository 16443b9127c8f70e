"""GBNF text: string literals, and the checks made before llama.cpp's parser sees a grammar."""

from __future__ import annotations

import re

from allama import _native
from allama.errors import GrammarError

# llama.cpp's GBNF parser recurses once per nested group (deeper nesting overflows the stack;
# 20000 levels crash it) and loops forever on a repetition {m,n} with n < m.
MAX_GBNF_NESTING = 1000
_GBNF_TOKENS = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|#[^\r\n]*|[()]|\{\s*(\d+)\s*,\s*(\d+)\s*\}')


def gbnf_trap(grammar: str) -> str | None:
    """What in GBNF text would crash or hang llama.cpp's parser, or None. (The parser itself
    reports every other problem.)"""
    if "{" not in grammar and grammar.count("(") <= MAX_GBNF_NESTING:
        return None
    depth = 0
    for match in _GBNF_TOKENS.finditer(grammar):
        token = match.group()
        if token == "(":
            depth += 1
            if depth > MAX_GBNF_NESTING:
                return f"groups nest more than {MAX_GBNF_NESTING} deep"
        elif token == ")":
            depth -= 1
        elif match.group(1) is not None and int(match.group(2)) < int(match.group(1)):
            return f"the repetition {token} has a maximum below its minimum"
    return None


def checked_gbnf(grammar: str) -> str:
    """`grammar`, refused with a GrammarError if it would crash or hang llama.cpp's parser."""
    trap = gbnf_trap(grammar)
    if trap:
        raise GrammarError(f"the grammar does not parse: {trap}")
    return grammar


def grammar_problem(grammar: str, root: str) -> str | None:
    """What is wrong with GBNF text whose start rule is `root`, or None."""
    return gbnf_trap(grammar) or _native.grammar_problem(grammar, root)


def gbnf_literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
