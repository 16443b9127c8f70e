"""allama: asyncio-native llama.cpp with continuous batching."""

from __future__ import annotations

from allama import errors
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
    "ContextOverflowError",
    "EngineClosedError",
    "GrammarError",
    "ModelLoadError",
    "QueueFullError",
    "errors",
]
