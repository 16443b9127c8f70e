"""Greedy continuation straight on a native context: the reference the engine-level tests
compare against."""

from __future__ import annotations

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
