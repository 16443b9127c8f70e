"""Making a random-weight model write chosen text: logits processors that force tokens."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Processor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def forced_tokens(llm, tokens: Sequence[int]) -> Processor:
    """A logits processor that makes the model emit exactly `tokens`, then end."""
    queue = list(tokens)

    def processor(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        out = np.full_like(scores, -np.inf)
        out[queue.pop(0) if queue else llm.token_eos()] = 0.0
        return out

    return processor


def byte_tokens(llm, data: bytes) -> list[int]:
    """`data` spelled with the SPM vocabulary's byte-fallback tokens <0xNN>, one per byte."""
    table = getattr(llm, "_byte_token_table", None)
    if table is None:
        table = {}
        for t in range(llm.n_vocab()):
            text = llm._vocab.token_text(t)
            if len(text) == 6 and text.startswith(b"<0x") and text.endswith(b">"):
                table[int(text[3:5], 16)] = t
        llm._byte_token_table = table
    return [table[b] for b in data]


def piece_token(llm, piece: bytes) -> int:
    """The token whose text is exactly `piece`."""
    return next(t for t in range(llm.n_vocab()) if llm._vocab.token_to_piece(t) == piece)


def forced_text(llm, text: str) -> Processor:
    """Makes the model write `text` byte by byte (split multi-byte characters included)."""
    return forced_tokens(llm, byte_tokens(llm, text.encode()))


def forced_reply(llm, text: str) -> Processor:
    """Makes the model write `text` as the tokenizer splits it (special tokens parsed)."""
    return forced_tokens(llm, llm.tokenize(text.encode(), add_bos=False, special=True))


def scripted_steps(llm, replies: Sequence[str]) -> Processor:
    """A logits processor for a turn of several completions (a chat handler's steps): the
    n-th completion it sees writes `replies[n]` byte by byte, then ends. A call continues the
    current completion only when its ids are the previous ones plus the token forced last."""
    queue = [byte_tokens(llm, r.encode()) for r in replies]
    state: dict = {"start": 0, "last": None, "forced": None, "tokens": []}

    def processor(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        n = len(input_ids)
        if not (n == (state["last"] or 0) + 1 and int(input_ids[-1]) == state["forced"]):
            state["start"] = n
            state["tokens"] = queue.pop(0) if queue else []
        k = n - state["start"]
        token = state["tokens"][k] if k < len(state["tokens"]) else llm.token_eos()
        state["last"], state["forced"] = n, token
        out = np.full_like(scores, -np.inf)
        out[token] = 0.0
        return out

    return processor
