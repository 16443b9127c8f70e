"""Speculative decoding: what of a draft model's proposal a sequence decodes, how many
proposed tokens it decodes next time, and the verification of the decoded proposal with the
sequence's own sampler. (The batch builder puts the proposals in the shared batch.)"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from allama import _native
from allama.engine.media_positions import position

if TYPE_CHECKING:  # sequence.py takes DRAFT_CAP_START from here
    from allama.engine.sequence import Sequence

log = logging.getLogger("allama.engine")

# Each proposed token is a batch row that costs compute (on a CPU, nearly as much as a
# sequence's own token), so a sequence's cap follows its acceptance: it doubles after a
# proposal confirmed whole and falls to what was confirmed + 1 after a refusal.
DRAFT_CAP_START = 4
DRAFT_CAP_MAX = 32


def proposal(draft_model: Any, tokens: list[int], limit: int, n_vocab: int) -> list[int] | None:
    """The draft model's proposal after `tokens`, cut to `limit` tokens and to its first id
    outside the vocabulary (media placeholders are negative); None when it proposes nothing
    or fails (a warning: speculation is an optimisation, never an error)."""
    try:
        ids = np.asarray(tokens, dtype=np.intc)
        # a draft that can stop early is told the limit (LlamaModelDraft: fewer forward passes)
        proposed = draft_model.propose(ids, limit) if hasattr(draft_model, "propose") else draft_model(ids)
    except Exception as exc:  # noqa: BLE001 - the user's draft model failed
        log.warning("the draft model failed: %s", exc)
        return None
    out = []
    for token in list(proposed)[:limit]:
        token = int(token)
        if not 0 <= token < n_vocab:
            break
        out.append(token)
    return out or None


def next_cap(cap: int, proposed: int, accepted: int) -> int:
    """The cap on proposed tokens after `accepted` of `proposed` were confirmed."""
    return min(2 * cap, DRAFT_CAP_MAX) if accepted == proposed else accepted + 1


class Speculator:
    """Proposes draft tokens for generating sequences and, after the decode, keeps of each
    proposal what the sequence's own sampler confirms."""

    def __init__(self, ctx: _native.Context, vocab: _native.Vocab, n_ctx: int, draft_model: Any,
                 counters: dict[str, int]) -> None:
        self.ctx = ctx
        self.vocab = vocab
        self.n_ctx = n_ctx              # the window one request may use
        self.draft_model = draft_model  # a LlamaDraftModel; None: no speculation
        self.counters = counters        # the engine's counters: draft_tokens, draft_tokens_accepted

    def propose(self, seq: Sequence, budget: int) -> list[int] | None:
        """The draft model's proposal for a generating sequence, cut to what may still be
        generated and to `budget` tokens; None when it proposes nothing or may not."""
        request = seq.request
        limit = min(budget, seq.draft_cap, self.n_ctx - len(seq.tokens) - 1)
        if request.max_tokens is not None:
            limit = min(limit, request.max_tokens - seq.generated - 1)
        if limit <= 0 or request.logits_processor is not None:
            return None
        return proposal(self.draft_model, seq.tokens, limit, self.ctx.n_vocab)

    def verify(self, seq: Sequence, first: int, proposed: list[int],
               accept: Callable[[Sequence, int, Any], bool]) -> None:
        """Samples the sequence's rows in order while the samples confirm the proposal (each row
        saw the proposed tokens before it), drops the KV of the refused rest, and hands
        `accept` the confirmed tokens plus the one sampled after them: what one-at-a-time
        decoding gives. `accept(seq, row, token or error)` says whether the sequence goes on."""
        results: list[Any] = []
        for i in range(len(proposed) + 1):
            result = _native.sample_batch(self.ctx, [(seq.chain, first + i)])[0]
            results.append(result)
            if (i == len(proposed) or isinstance(result, BaseException) or int(result) != proposed[i]
                    or self.vocab.is_eog(int(result))):
                break
        accepted = len(results) - 1
        seq.draft_cap = next_cap(seq.draft_cap, len(proposed), accepted)
        self.counters["draft_tokens"] += len(proposed)
        self.counters["draft_tokens_accepted"] += accepted
        base = seq.n_past - 1  # the index of the token decoded at row `first`
        if accepted < len(proposed):
            self.ctx.seq_rm(seq.seq_id, position(seq.shifts, base + 1 + accepted), -1)
        seq.drafted = accepted > 0
        for i, result in enumerate(results):
            seq.n_past = base + 1 + i  # evaluated: up to the token before this one
            if not accept(seq, first + i, result):
                return
        seq.drafted = False
