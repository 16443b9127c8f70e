"""Speculative decoding's two small rules: what of a draft model's proposal a sequence
decodes, and how many proposed tokens it decodes next time. (The scheduler puts the
proposals in the shared batch and verifies them with the sequence's own sampler.)"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger("allama.engine")

# Each proposed token is a batch row that costs compute (on a CPU, nearly as much as a
# sequence's own token), so a sequence's cap follows its acceptance: it doubles after a
# proposal confirmed whole and falls to what was confirmed + 1 after a refusal.
DRAFT_CAP_START = 4
DRAFT_CAP_MAX = 32


def proposal(draft_model: Any, tokens: Sequence[int], limit: int, n_vocab: int) -> list[int] | None:
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
