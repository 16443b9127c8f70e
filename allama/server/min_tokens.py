"""`min_tokens` of a request: the model may not end its reply (sample an end-of-generation
token) before it has generated that many tokens, as llama-cpp-python's server's
MinTokensLogitsProcessor; a stop string or max_tokens may still end it sooner."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class MinTokensLogitsProcessor:
    """Masks every end-of-generation token (EOS, EOT, ...) until `min_tokens` tokens follow
    the prompt. The prompt's length is the length of the first sequence the processor sees
    (every choice of a request starts from the same prompt), or, given `prompts` (several
    prompts in one request), the longest of them that the sequence starts with."""

    def __init__(self, min_tokens: int, llm: Any, prompts: Sequence[Sequence[int]] | None = None) -> None:
        self.min_tokens = min_tokens
        vocab = getattr(llm, "_vocab", None)
        eog = list(getattr(vocab, "eog_tokens", None) or []) or [llm.token_eos()]
        self._eog = np.array(sorted({t for t in eog if t >= 0}), dtype=np.intp)
        self._prompts = [tuple(p) for p in prompts] if prompts is not None and len(prompts) > 1 else None
        self._prompt_len: int | None = None

    def _generated(self, input_ids: np.ndarray) -> int:
        n = len(input_ids)
        if self._prompts is None:
            if self._prompt_len is None or n < self._prompt_len:
                self._prompt_len = n
            return n - self._prompt_len
        ids = tuple(int(t) for t in input_ids)
        prompt = max((len(p) for p in self._prompts if ids[:len(p)] == p), default=n)
        return n - prompt

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if len(self._eog) and self._generated(input_ids) < self.min_tokens:
            scores = np.array(scores, dtype=np.float32, copy=True)
            scores[self._eog[self._eog < len(scores)]] = -np.inf
        return scores
