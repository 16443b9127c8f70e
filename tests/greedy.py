"""Greedy continuation straight on a native context: the reference the engine-level tests
compare against; and the engine's greedy token ids, to compare with it."""

from __future__ import annotations

from typing import Any

import numpy as np

from allama import _native


def greedy_tokens(ctx: _native.Context, n_past: int, n: int, seq_id: int = 0) -> list[int]:
    """`n` greedy tokens after what sequence `seq_id` holds (its last logits are ctx.logits(-1),
    its next position `n_past`)."""
    out = []
    batch = _native.Batch(1)
    for _ in range(n):
        token = int(np.argmax(ctx.logits(-1)))
        out.append(token)
        batch.clear()
        batch.add(token, n_past, seq_id, True)
        ctx.decode(batch)
        n_past += 1
    return out


def reference_decode(model: _native.Model, prompt: list[int], n: int, *,
                     compare: list[int] | None = None) -> tuple[list[int], list[float]]:
    """`n` greedy tokens after `prompt` on a fresh single-sequence context (one thread): the
    reference an engine run is compared with. Also returns, per step, how far the logit of
    compare[k] (a token the engine chose) falls below the best one (0.0 where they agree; the
    top-two margin where compare is not given)."""
    params = _native.ContextParams()
    params.n_ctx = len(prompt) + n + 8
    params.n_batch = params.n_ubatch = max(32, len(prompt))
    params.n_seq_max = 1
    params.n_threads = params.n_threads_batch = 1
    params.flash_attn_type = 0  # as Llama(flash_attn=False) decodes: flash attention rounds otherwise
    ctx = _native.Context(model, params)
    try:
        batch = _native.Batch(max(32, len(prompt)))
        batch.add_tokens(prompt, 0, 0, True)
        ctx.decode(batch)
        tokens: list[int] = []
        gaps: list[float] = []
        n_past = len(prompt)
        for k in range(n):
            logits = ctx.logits(-1)
            best = int(np.argmax(logits))
            if compare is not None and k < len(compare):
                gaps.append(float(logits[best] - logits[compare[k]]))
            else:
                top = np.partition(logits, -2)[-2:]
                gaps.append(float(abs(top[1] - top[0])))
            tokens.append(best)
            if k + 1 < n:
                batch.clear()
                batch.add(best, n_past, 0, True)
                ctx.decode(batch)
                n_past += 1
        return tokens, gaps
    finally:
        ctx.close()


async def engine_greedy(llm: Any, prompt: list[int], n: int) -> list[int]:
    """n greedy token ids from the engine (read through stopping_criteria, which sees every id)."""
    seen: list[int] = []

    def stop(ids: np.ndarray, logits: np.ndarray) -> bool:
        seen[:] = ids[len(prompt):].tolist()
        return len(seen) >= n

    await llm.create_completion(prompt, max_tokens=None, temperature=0.0, ignore_eos=True, stopping_criteria=stop)
    assert len(seen) == n
    return seen
