"""llama-cpp-python's `llama_cpp.llama_grammar`: GBNF grammars and JSON-schema conversion
(allama.grammar)."""

from allama.grammar import *  # noqa: F401,F403
from allama.grammar import __all__  # noqa: F401
