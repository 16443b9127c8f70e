"""The exception hierarchy. Every failure allama reports derives from AllamaError
or from the built-in exception a Python user would expect (ValueError, TypeError,
FileNotFoundError)."""

from __future__ import annotations

__all__ = [
    "AllamaError",
    "ModelLoadError",
    "ContextOverflowError",
    "GrammarError",
    "QueueFullError",
    "EngineClosedError",
    "ClosedError",
    "DecodeError",
    "DecodeAbortedError",
    "KVCacheFullError",
    "WorkerLostError",
    "RequestTimeoutError",
]


class AllamaError(Exception):
    """Base class of allama's own errors."""


class ModelLoadError(AllamaError, ValueError):
    """A model or adapter file exists but is not a loadable GGUF file."""


class ContextOverflowError(AllamaError, ValueError):
    """A prompt does not fit the context window (n_ctx)."""


class GrammarError(AllamaError, ValueError):
    """A grammar or JSON schema does not convert or parse, or allows no token."""


class QueueFullError(AllamaError):
    """The engine's queue of waiting requests is full (max_queue)."""


class EngineClosedError(AllamaError):
    """The model was closed; pending and new requests fail with this."""


class ClosedError(AllamaError, ValueError):
    """A native object (model, context) was used after close()."""


class DecodeError(AllamaError, RuntimeError):
    """llama.cpp failed to decode or encode a batch."""


class DecodeAbortedError(DecodeError):
    """A decode was stopped by Context.abort()."""


class KVCacheFullError(DecodeError):
    """The KV cache has no free cells for the batch."""


class WorkerLostError(DecodeError):
    """An RPC worker holding some of the model's layers went away; the model cannot decode
    any more and must be loaded again (docs/deploying.md)."""


class RequestTimeoutError(AllamaError, TimeoutError):
    """A request ran past its `timeout`."""


class QuantizationError(AllamaError, RuntimeError):
    """llama.cpp's quantizer refused or failed to write the model (its reason in the message)."""
