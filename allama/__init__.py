"""allama: asyncio-native llama.cpp with continuous batching."""

from __future__ import annotations

from types import ModuleType

from allama import errors
from allama.engine import EngineStats
from allama.cache import LlamaCache, LlamaDiskCache, LlamaRAMCache
from allama.grammar import LlamaGrammar
from allama.llama import Llama
from allama.quantization import quantize
from allama.session import LlamaSession
from allama.speculative import LlamaDraftModel, LlamaModelDraft, LlamaPromptLookupDecoding
from allama.state import LlamaState
from allama.stream import AsyncStream
from allama.tokenizer import LlamaHFTokenizer, LlamaTokenizer
from allama.logits_processing import (
    LogitsProcessor,
    LogitsProcessorList,
    MinTokensLogitsProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
)
from allama.errors import (
    AllamaError,
    ContextOverflowError,
    EngineClosedError,
    GrammarError,
    ModelLoadError,
    QuantizationError,
    QueueFullError,
)

__version__ = "0.1.0"

__all__ = [
    "AllamaError",
    "AsyncStream",
    "EngineStats",
    "Llama",
    "LlamaCache",
    "LlamaDiskCache",
    "LlamaDraftModel",
    "LlamaGrammar",
    "LlamaModelDraft",
    "LlamaPromptLookupDecoding",
    "LlamaRAMCache",
    "LlamaSession",
    "LlamaState",
    "LlamaHFTokenizer",
    "LlamaTokenizer",
    "ContextOverflowError",
    "EngineClosedError",
    "GrammarError",
    "ModelLoadError",
    "QuantizationError",
    "QueueFullError",
    "errors",
    "quantize",
    "LogitsProcessor",
    "LogitsProcessorList",
    "MinTokensLogitsProcessor",
    "StoppingCriteria",
    "StoppingCriteriaList",
]


def __getattr__(name: str) -> ModuleType:
    """`allama.chat` after a bare `import allama`: the chat package (Jinja2, the chat formats and
    handlers) loads on first use, not with allama."""
    if name == "chat":
        import allama.chat

        return allama.chat
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
