"""Draft models for speculative decoding, with llama-cpp-python's interface.

A draft model proposes the tokens likely to follow a sequence; the engine decodes them
together with the sequence's next token, in the same batch as every other sequence, and
keeps the proposals that the target model's own sampling confirms. Output is exactly what
decoding one token at a time gives; only the number of decode steps changes.
"""

from __future__ import annotations

import abc
import os
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from allama import _native
from allama.llama_params import default_threads
from allama.token_ids import first_outside
from allama.token_prefix import common_prefix


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


class LlamaModelDraft(LlamaDraftModel):
    """A small GGUF model that proposes its greedy continuation (llama.cpp's draft model,
    `llama-server -md`): a model of the same family and vocabulary as the target, several
    times smaller. It keeps the KV of the last `n_slots` sequences it was shown, so each step
    evaluates only what is new since that sequence's last call.

    It runs on the engine's decode thread, one sequence after another: it pays off when its
    forward pass costs a small fraction of the target's.
    """

    def __init__(self, model_path: str | os.PathLike[str], num_pred_tokens: int = 8, *, n_ctx: int = 4096,
                 n_slots: int = 8, n_batch: int = 512, n_threads: int | None = None, n_gpu_layers: int = 0) -> None:
        if num_pred_tokens < 1 or n_slots < 1:
            raise ValueError("num_pred_tokens and n_slots must be at least 1")
        self.num_pred_tokens = num_pred_tokens
        params = _native.ModelParams()
        params.n_gpu_layers = n_gpu_layers
        self._model = _native.Model.load(os.fspath(model_path), params)
        cp = _native.ContextParams()
        cp.n_ctx = n_ctx * n_slots
        cp.n_batch = cp.n_ubatch = n_batch
        cp.n_seq_max = n_slots
        cp.kv_unified = True
        cp.n_threads = cp.n_threads_batch = default_threads(n_threads, None)[0]  # the target's generation threads
        self._ctx = _native.Context(self._model, cp)
        self._n_ctx = n_ctx
        self._n_vocab = self._ctx.n_vocab
        self._batch = _native.Batch(n_batch, 1)
        self._slots: list[list[int]] = [[] for _ in range(n_slots)]  # tokens whose KV each sequence id holds
        self._lru = list(range(n_slots))  # least recently used first
        self._lock = threading.Lock()

    def __call__(self, input_ids: npt.NDArray[np.intc], /, **kwargs: Any) -> npt.NDArray[np.intc]:
        return self.propose(input_ids, self.num_pred_tokens)

    def propose(self, input_ids: Any, limit: int) -> npt.NDArray[np.intc]:
        """Up to `limit` (and num_pred_tokens) greedy tokens after `input_ids`."""
        tokens = [int(t) for t in input_ids]
        n = min(limit, self.num_pred_tokens)
        if not tokens or n < 1 or len(tokens) + n > self._n_ctx or first_outside(tokens, self._n_vocab) is not None:
            return np.empty(0, dtype=np.intc)  # media placeholders, or ids this model does not have
        with self._lock:
            slot = max(self._lru, key=lambda s: (common_prefix(self._slots[s], tokens), -self._lru.index(s)))
            self._lru.remove(slot)
            self._lru.append(slot)
            keep = min(common_prefix(self._slots[slot], tokens), len(tokens) - 1)  # the last token is decoded again for its logits
            self._ctx.seq_rm(slot, keep, -1)
            self._slots[slot] = tokens[:keep]
            self._decode(slot, tokens[keep:], keep)
            out: list[int] = []
            while True:
                out.append(int(np.argmax(self._ctx.logits(-1))))
                if len(out) == n:
                    break
                self._decode(slot, out[-1:], len(tokens) + len(out) - 1)
            self._slots[slot] = tokens + out[:-1]
            return np.asarray(out, dtype=np.intc)

    def _decode(self, slot: int, tokens: list[int], pos0: int) -> None:
        step = self._batch.capacity
        for start in range(0, len(tokens), step):
            chunk = tokens[start:start + step]
            self._batch.clear()
            self._batch.add_tokens(chunk, pos0 + start, slot, start + step >= len(tokens))
            self._ctx.decode(self._batch)

    def close(self) -> None:
        """Frees the draft model's context now."""
        self._ctx.close()


__all__ = ["LlamaDraftModel", "LlamaModelDraft", "LlamaPromptLookupDecoding"]
