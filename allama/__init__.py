"""allama: asyncio-native llama.cpp with continuous batching."""

from __future__ import annotations

from allama import errors
from allama.engine import EngineStats
from allama.llama import Llama
from allama.stream import AsyncStream
from allama.errors import (
    AllamaError,
    ContextOverflowError,
    EngineClosedError,
    GrammarError,
    ModelLoadError,
    QueueFullError,
)

__version__ = "0.1.0"

__all__ = [
    "AllamaError",
    "AsyncStream",
    "EngineStats",
    "Llama",
    "ContextOverflowError",
    "EngineClosedError",
    "GrammarError",
    "ModelLoadError",
    "QueueFullError",
    "errors",
]
