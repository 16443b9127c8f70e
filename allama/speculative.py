"""Draft models for speculative decoding, with llama-cpp-python's interface.

A draft model proposes the tokens likely to follow a sequence; the engine decodes them
together with the sequence's next token, in the same batch as every other sequence, and
keeps the proposals that the target model's own sampling confirms. Output is exactly what
decoding one token at a time gives; only the number of decode steps changes.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import numpy.typing as npt


class LlamaDraftModel(abc.ABC):
    """Proposes continuation tokens for a sequence (`Llama(draft_model=...)`)."""

    @abc.abstractmethod
    def __call__(self, input_ids: npt.NDArray[np.intc], /, **kwargs: Any) -> npt.NDArray[np.intc]:
        """The proposed tokens after `input_ids` (may be empty)."""


class LlamaPromptLookupDecoding(LlamaDraftModel):
    """Prompt lookup: finds the sequence's last n-gram (longest first, up to
    `max_ngram_size`) earlier in the sequence and proposes the `num_pred_tokens` that
    followed its most recent occurrence. Free to compute; pays off on text that repeats
    its context (code edits, extraction, summaries quoting the source)."""

    def __init__(self, max_ngram_size: int = 2, num_pred_tokens: int = 10) -> None:
        if max_ngram_size < 1 or num_pred_tokens < 1:
            raise ValueError("max_ngram_size and num_pred_tokens must be at least 1")
        self.max_ngram_size = max_ngram_size
        self.num_pred_tokens = num_pred_tokens

    @staticmethod
    def find_candidate_pred_tokens(input_ids: npt.NDArray[np.intc], max_ngram_size: int,
                                   num_pred_tokens: int) -> npt.NDArray[np.intc]:
        ids = np.asarray(input_ids, dtype=np.intc)
        n = ids.shape[0]
        for size in range(min(max_ngram_size, n - 1), 0, -1):
            tail = ids[n - size:]
            windows = np.lib.stride_tricks.sliding_window_view(ids[:n - 1], size)  # occurrences before the tail
            starts = np.flatnonzero((windows == tail).all(axis=1))
            if starts.size:
                begin = int(starts[-1]) + size
                return ids[begin:begin + num_pred_tokens].copy()
        return np.empty(0, dtype=np.intc)

    def __call__(self, input_ids: npt.NDArray[np.intc], /, **kwargs: Any) -> npt.NDArray[np.intc]:
        return self.find_candidate_pred_tokens(input_ids, self.max_ngram_size, self.num_pred_tokens)


__all__ = ["LlamaDraftModel", "LlamaPromptLookupDecoding"]
