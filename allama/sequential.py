"""llama-cpp-python's stateful single-sequence API: eval, sample, generate.

LangChain, LlamaIndex and Outlines drive llama-cpp-python through `eval`,
`sample`, `generate`, `input_ids`, `scores` and `n_tokens`: one token history,
advanced step by step by the caller. That is inherently sequential, so it runs
on a private native context (created on first use, one sequence, guarded by a
lock) beside the batching engine, which keeps serving `create_completion`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from allama import _native
from allama.state import LlamaState
from allama.token_prefix import common_prefix

LogitsProcessor = Callable[[np.ndarray, np.ndarray], np.ndarray]
StoppingCriteria = Callable[[np.ndarray, np.ndarray], bool]


class SequentialContext:
    """One token history on its own context, advanced by eval() and sampled by sample()."""

    def __init__(self, model: _native.Model, params: _native.ContextParams, logits_all: bool, seed: int) -> None:
        """`params` as LlamaParams.single_sequence_context makes them (n_ctx, n_batch, threads)."""
        self.model = model
        self.ctx = _native.Context(model, params)
        n_ctx = self.n_ctx = params.n_ctx
        self.n_batch = params.n_batch
        self.n_vocab = _native.Vocab(model).n_tokens
        self.logits_all = logits_all
        self.seed = seed
        self.lock = threading.RLock()
        self.input_ids = np.zeros(n_ctx, dtype=np.intc)
        self.scores = np.zeros((n_ctx if logits_all else 1, self.n_vocab), dtype=np.single)
        self.n_tokens = 0
        self._chains: dict[tuple, _native.SamplerChain] = {}

    # --- history ---------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.n_tokens = 0

    def eval(self, tokens: Sequence[int]) -> None:
        """Appends tokens to the history, decoding them in n_batch chunks."""
        with self.lock:
            tokens = [int(t) for t in tokens]
            if self.n_tokens + len(tokens) > self.n_ctx:
                raise ValueError(f"eval of {len(tokens)} tokens would exceed the context window of {self.n_ctx}")
            if not self.ctx.seq_rm(0, self.n_tokens, -1):
                # a recurrent (or hybrid) state cannot be cut back to a shorter history: start
                # over and evaluate the kept prefix again
                tokens = self.input_ids[:self.n_tokens].tolist() + tokens
                self.ctx.seq_rm(0, -1, -1)
                self.n_tokens = 0
            for start in range(0, len(tokens), self.n_batch):
                chunk = tokens[start:start + self.n_batch]
                batch = _native.Batch(len(chunk))
                for k, t in enumerate(chunk):
                    batch.add(t, self.n_tokens + k, 0, self.logits_all or k == len(chunk) - 1)
                self.ctx.decode(batch)
                if self.logits_all:
                    self.scores[self.n_tokens:self.n_tokens + len(chunk)] = self.ctx.logits_rows(list(range(len(chunk))))
                else:
                    self.scores[0] = self.ctx.logits(len(chunk) - 1)
                self.input_ids[self.n_tokens:self.n_tokens + len(chunk)] = chunk
                self.n_tokens += len(chunk)

    def last_logits(self) -> np.ndarray:
        if self.n_tokens == 0:
            raise ValueError("nothing has been evaluated yet: call eval() first")
        return self.scores[self.n_tokens - 1 if self.logits_all else 0]

    # --- sampling ----------------------------------------------------------------

    def chain(self, **options: Any) -> _native.SamplerChain:
        """The sampler chain for these options, kept across calls so its random state advances."""
        key = tuple(sorted((k, repr(v)) for k, v in options.items()))
        chain = self._chains.get(key)
        if chain is None:
            params = _native.SamplerParams()
            for name, value in options.items():
                setattr(params, name, value)
            chain = self._chains[key] = _native.SamplerChain(self.model, params)
        return chain

    def sample(self, chain: _native.SamplerChain, logits_processor: LogitsProcessor | None = None) -> int:
        with self.lock:
            logits = np.array(self.last_logits(), dtype=np.float32)
            if logits_processor is not None:
                logits = np.ascontiguousarray(logits_processor(self.input_ids[:self.n_tokens], logits),
                                              dtype=np.float32)
            return chain.sample_logits(logits)

    def generate(self, tokens: Sequence[int], chain: _native.SamplerChain, reset: bool,
                 logits_processor: LogitsProcessor | None,
                 stopping_criteria: StoppingCriteria | None) -> Iterator[int]:
        """Evaluates `tokens` (reusing a matching prefix of the history), then yields sampled tokens."""
        tokens = [int(t) for t in tokens]
        with self.lock:
            if reset:
                common = common_prefix(self.input_ids[:self.n_tokens], tokens, len(tokens) - 1)
                self.n_tokens = common
                tokens = tokens[common:]
        while True:
            self.eval(tokens)
            token = self.sample(chain, logits_processor)
            if stopping_criteria is not None and stopping_criteria(self.input_ids[:self.n_tokens],
                                                                   self.last_logits()):
                return
            tokens_or_none = yield token
            tokens = [token] if tokens_or_none is None else list(tokens_or_none)

    # --- state --------------------------------------------------------------------

    def save_state(self) -> LlamaState:
        with self.lock:
            data = self.ctx.state_get()
            return LlamaState(self.input_ids.copy(), self.scores.copy(), self.n_tokens, data, len(data), self.seed,
                              scope="context")

    def load_state(self, state: LlamaState) -> None:
        if state.scope != "context":
            raise ValueError("this state holds one engine sequence (a session's), not the eval/generate history: "
                             "load it into a session or with Llama.load_state")
        with self.lock:
            self.ctx.state_set(state.llama_state)
            self.input_ids = state.input_ids.copy()
            self.scores = state.scores.copy()
            self.n_tokens = state.n_tokens
