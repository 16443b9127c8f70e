"""Grammars for constrained generation: LlamaGrammar and llama.cpp's sample grammars.

The JSON Schema converter (`json_schema_to_gbnf`, `SchemaConverter`) lives in
`allama.json_schema` and is importable from here too, as in llama-cpp-python. The grammar
constants (`JSON_GBNF`, `ARITHMETIC_GBNF`, ...) are llama.cpp's `grammars/*.gbnf` files, read
when first used: from `allama/grammars/` in an installed package, else from the source
checkout's `vendor/llama.cpp/grammars/`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from allama.errors import GrammarError
from allama.gbnf import grammar_problem
from allama.json_schema import PRIMITIVE_RULES, BuiltinRule, SchemaConverter, json_schema_to_gbnf

__all__ = [
    "ARITHMETIC_GBNF",
    "BuiltinRule",
    "C_GBNF",
    "CHESS_GBNF",
    "JAPANESE_GBNF",
    "JSON_ARR_GBNF",
    "JSON_GBNF",
    "LIST_GBNF",
    "LLAMA_GRAMMAR_DEFAULT_ROOT",
    "LlamaGrammar",
    "SchemaConverter",
    "json_schema_to_gbnf",
]

LLAMA_GRAMMAR_DEFAULT_ROOT = "root"

class LlamaGrammar:
    """A GBNF grammar, checked when it is made (llama-cpp-python's interface).

    `LlamaGrammar(text)` or, as llama-cpp-python spells it, `LlamaGrammar(_grammar=text)`.
    """

    def __init__(self, grammar: str | None = None, root: str = LLAMA_GRAMMAR_DEFAULT_ROOT, *,
                 _grammar: str | None = None, **_: Any) -> None:
        if grammar is None:
            grammar = _grammar
        elif _grammar is not None:
            raise TypeError("give the grammar once: as `grammar` or as `_grammar`")
        if not isinstance(grammar, str):
            raise TypeError(f"a grammar is GBNF text (str), not {type(grammar).__name__}")
        problem = grammar_problem(grammar, root)
        if problem:
            raise GrammarError(f"the grammar does not parse: {problem}")
        self.grammar = grammar
        self.root = root

    @property
    def _grammar(self) -> str:  # llama-cpp-python's attribute names
        return self.grammar

    @property
    def _root(self) -> str:
        return self.root

    @classmethod
    def from_string(cls, grammar: str, verbose: bool = True) -> "LlamaGrammar":
        return cls(grammar)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], verbose: bool = True) -> "LlamaGrammar":
        with open(path, encoding="utf-8") as f:
            return cls(f.read())

    @classmethod
    def from_json_schema(cls, json_schema: str | dict[str, Any], verbose: bool = True) -> "LlamaGrammar":
        return cls(json_schema_to_gbnf(json_schema))

    def __str__(self) -> str:
        return self.grammar


# llama.cpp's sample grammars, by constant name; their text is read from the files on first use.
_GRAMMAR_FILES = {
    "ARITHMETIC_GBNF": "arithmetic.gbnf",
    "C_GBNF": "c.gbnf",
    "CHESS_GBNF": "chess.gbnf",
    "JAPANESE_GBNF": "japanese.gbnf",
    "JSON_ARR_GBNF": "json_arr.gbnf",
    "JSON_GBNF": "json.gbnf",
    "LIST_GBNF": "list.gbnf",
}


def grammar_file(filename: str) -> Path:
    """Where llama.cpp's `grammars/<filename>` is: shipped in the package, or in the checkout's vendor tree."""
    places = [Path(p) / "grammars" for p in sys.modules[__package__].__path__]  # allama's own folders
    places.append(Path(__file__).resolve().parent.parent / "vendor" / "llama.cpp" / "grammars")
    for place in places:
        if (place / filename).is_file():
            return place / filename
    raise FileNotFoundError(f"llama.cpp's grammar file {filename} is neither in {places[0]} nor in {places[-1]}")


def __getattr__(name: str) -> Any:
    if name in _GRAMMAR_FILES:
        text = grammar_file(_GRAMMAR_FILES[name]).read_text(encoding="utf-8")
        globals()[name] = text
        return text
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
