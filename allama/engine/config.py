"""The engine's sizes: the window, sequences and batch per step, kept sequences, the queue."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    n_ctx: int          # the window one request may use
    n_parallel: int     # sequences decoded at once
    n_batch: int        # tokens per decode step
    n_keep: int         # sequence ids beyond n_parallel: sessions, finished KV kept for prefix reuse
    max_queue: int      # requests waiting for a slot before QueueFullError
    min_shared_prefix: int = 16  # tokens worth waiting for another request's prefill
    pooling_type: int = -1       # embeddings: -1 the model's, 0 none, 1 mean, 2 cls, 3 last, 4 rank
    embed_max_tokens: int = 512  # tokens in one embedding batch (an input longer than this is truncated)
    embed_max_seqs: int = 4      # inputs in one embedding batch (fastest on CPU; docs/benchmarks.md)
    kv_unified: bool = True      # False: a KV stream of n_ctx cells per sequence id (docs/engine.md)
    overlap_outputs: bool = True  # a step's tokens become text while the next step decodes (docs/engine.md)

    @staticmethod
    def default_n_keep(n_parallel: int, kv_unified: bool) -> int:
        """Kept sequences when the caller does not say: one per running sequence in a unified
        cache, where they hold only cells nobody else needs; with a stream per sequence each
        one costs a whole window of memory, so a quarter as many (at least one)."""
        return n_parallel if kv_unified else max(1, n_parallel // 4)
