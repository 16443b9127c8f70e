"""llama-cpp-python's `llama_cpp.llama`: the blocking `Llama` (allama.sync.Llama, the twin of the
asyncio allama.Llama over the same continuous-batching engine) and the names that module holds."""

from allama.cache import BaseLlamaCache, LlamaCache, LlamaDiskCache, LlamaRAMCache
from allama.compat.llama_cpp import llama_chat_format
from allama.compat.llama_cpp import llama_cpp
from allama.compat.llama_cpp.llama_types import *  # noqa: F401,F403
from allama.grammar import LlamaGrammar
from allama.logits_processing import (
    LogitsProcessor,
    LogitsProcessorList,
    MinTokensLogitsProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
)
from allama.speculative import LlamaDraftModel
from allama.state import LlamaState
from allama.sync import Llama
from allama.tokenizer import BaseLlamaTokenizer, LlamaTokenizer

__all__ = [
    "BaseLlamaCache",
    "BaseLlamaTokenizer",
    "Llama",
    "LlamaCache",
    "LlamaDiskCache",
    "LlamaDraftModel",
    "LlamaGrammar",
    "LlamaRAMCache",
    "LlamaState",
    "LlamaTokenizer",
    "LogitsProcessor",
    "LogitsProcessorList",
    "MinTokensLogitsProcessor",
    "StoppingCriteria",
    "StoppingCriteriaList",
    "llama_chat_format",
    "llama_cpp",
]
