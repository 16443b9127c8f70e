"""A native context with small test defaults, for tests below the Llama API."""

from __future__ import annotations

from typing import Any

from allama import _native


def make_context(model: _native.Model, *, n_ctx: int = 512, n_batch: int = 256, n_seq_max: int = 4,
                 **extra: Any) -> _native.Context:
    """A context with small defaults; keyword arguments set ContextParams fields."""
    params = _native.ContextParams()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = n_batch
    params.n_seq_max = n_seq_max
    params.n_threads = params.n_threads_batch = 2
    params.kv_unified = True
    for key, value in extra.items():
        setattr(params, key, value)
    return _native.Context(model, params)
