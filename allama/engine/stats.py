"""A snapshot of the engine's counters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineStats:
    """Counters since the engine started. Token and decode counts come from
    llama.cpp's perf counters where it keeps them (`llama_tokens_evaluated`)."""

    active: int                  # sequences prefilling or generating
    queued: int                  # requests waiting for a sequence slot
    kept: int                    # finished sequences whose KV is kept for prefix reuse
    prompt_tokens: int           # prompt tokens of all admitted requests
    prompt_tokens_evaluated: int # of those, tokens actually run through the model
    prompt_tokens_reused: int    # of those, tokens served from kept or shared KV
    tokens_generated: int
    decode_calls: int
    llama_tokens_evaluated: int  # llama.cpp's n_p_eval + n_eval
    mean_batch_size: float       # llama_tokens_evaluated / decode_calls
    preemptions: int
    requests_finished: int
    requests_cancelled: int
    embedding_inputs: int        # inputs embedded (create_embedding, embed, rerank)
    embedding_batches: int       # embedding batches decoded (inputs / batches: the packing)
    step_seconds: float          # decode thread time in steps; minus the two below: Python's share
    decode_seconds: float        # in llama_decode
    sample_seconds: float        # in the batched native sampling call
    sessions: int = 0            # open sessions (each owns a sequence and keeps its KV)
    prompt_tokens_restored: int = 0  # of prompt_tokens_reused, tokens restored from a prompt cache
    draft_tokens: int = 0            # tokens a draft model proposed (speculative decoding)
    draft_tokens_accepted: int = 0   # of those, tokens the model's own sampling confirmed
