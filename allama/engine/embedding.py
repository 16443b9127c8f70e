"""Embeddings on the decode thread: a context of their own, inputs of many requests
packed into shared batches.

The runner owns an embeddings context (created on first use), separate from the
generation context so embedding never disturbs generation's KV. Each call to
`step()` decodes one batch of whole inputs (one sequence id each) taken in arrival
order, up to `max_tokens` tokens and `max_seqs` inputs, and reports each input's
vector (pooled) or token vectors (pooling none) as it completes.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from allama import _native
from allama.engine.loop_handle import LoopHandle
from allama.engine.output_sink import OutputSink
from allama.engine.request import Output

_embed_ids = itertools.count(1)


@dataclass(eq=False)
class EmbedRequest:
    """Token lists to embed (already truncated to what the context takes)."""

    inputs: list[list[int]]
    id: int = field(default_factory=lambda: next(_embed_ids))
    submitted_at: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class _Pending:
    request: EmbedRequest
    sink: OutputSink
    loop: LoopHandle
    next_input: int = 0


class EmbeddingRunner:
    def __init__(self, model: _native.Model, pooling_type: int, max_tokens: int, max_seqs: int,
                 n_threads: int, n_threads_batch: int) -> None:
        self.model = model
        self.pooling_type = pooling_type
        self.max_tokens = max_tokens
        self.max_seqs = max_seqs
        self.n_threads = n_threads
        self.n_threads_batch = n_threads_batch
        self._ctx: _native.Context | None = None
        self._batch = _native.Batch(max_tokens, 1)
        self._queue: deque[_Pending] = deque()
        self.inputs_embedded = 0
        self.tokens_embedded = 0
        self.batches = 0

    # --- state -----------------------------------------------------------------

    def context(self) -> _native.Context:
        if self._ctx is None:
            params = _native.ContextParams()
            # Non-causal models need a batch in one ubatch; llama.cpp mean-pools only when
            # n_ubatch is a multiple of n_seq_max, so the context is rounded up to one.
            seqs = max(self.max_seqs, 1)
            params.n_ctx = params.n_batch = params.n_ubatch = -(-self.max_tokens // seqs) * seqs
            params.n_seq_max = seqs
            params.embeddings = True
            params.pooling_type = self.pooling_type
            params.kv_unified = True
            params.n_threads = self.n_threads
            params.n_threads_batch = self.n_threads_batch
            params.flash_attn_type = 0
            self._ctx = _native.Context(self.model, params)
        return self._ctx

    @property
    def per_token(self) -> bool:
        return self.context().pooling_type == 0

    def add(self, request: EmbedRequest, sink: OutputSink, loop: LoopHandle) -> None:
        self._queue.append(_Pending(request, sink, loop))

    def has_work(self) -> bool:
        return bool(self._queue)

    def cancel(self, ids: set[int]) -> int:
        before = len(self._queue)
        self._queue = deque(p for p in self._queue if p.request.id not in ids)
        return before - len(self._queue)

    def fail_all(self, emit: Any, error: BaseException) -> None:
        for pending in self._queue:
            emit(pending, Output(0, [], "", error=error))
        self._queue.clear()

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()

    # --- one batch -------------------------------------------------------------

    def step(self, emit: Any) -> None:
        """Embeds one batch; calls emit(pending, Output) for every input that completed."""
        ctx = self.context()
        batch = self._batch
        batch.clear()
        taken: list[tuple[_Pending, int, int, int]] = []  # (pending, input index, first batch index, length)
        for pending in self._queue:
            while pending.next_input < len(pending.request.inputs) and len(taken) < self.max_seqs:
                tokens = pending.request.inputs[pending.next_input]
                if taken and batch.n_tokens + len(tokens) > self.max_tokens:
                    break
                first = batch.n_tokens
                seq = len(taken)
                if self.per_token:
                    for k, t in enumerate(tokens):
                        batch.add(t, k, seq, True)
                else:
                    batch.add_tokens(tokens, 0, seq, True)
                taken.append((pending, pending.next_input, first, len(tokens)))
                pending.next_input += 1
            else:
                continue
            break
        if not taken:
            return
        try:
            ctx.decode(batch)
            for seq, (pending, index, first, length) in enumerate(taken):
                if self.per_token:
                    vectors = np.stack([ctx.embeddings(first + k) for k in range(length)])
                else:
                    vectors = ctx.embeddings_seq(seq)
                emit(pending, Output(index, [], "", finish_reason="stop", embeddings=vectors))
        except Exception as exc:  # noqa: BLE001 - the batch's requests fail, the engine goes on
            for pending, index, _, _ in taken:
                emit(pending, Output(index, [], "", error=exc))
        finally:
            ctx.memory_clear(False)  # metadata only: the next batch overwrites the cells it uses
        self.batches += 1
        self.inputs_embedded += len(taken)
        self.tokens_embedded += batch.n_tokens
        while self._queue and self._queue[0].next_input >= len(self._queue[0].request.inputs):
            self._queue.popleft()
