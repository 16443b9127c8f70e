"""allama.sync.Llama: the blocking twin of allama.Llama, with llama-cpp-python's signatures.

It drives the same engine from a private event loop in a background thread, so
calls work from any thread (a web framework's thread pool included) and several
threads calling at once are batched together like async callers. Streams are
plain generators.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import partial
from types import TracebackType
from typing import Any

import anyio.from_thread

from allama.engine import EngineStats
from allama.llama import LLAMA_DEFAULT_SEED
from allama.llama import Llama as AsyncLlama
from allama.sequential import LlamaState, SequentialContext
from allama.tokenizer import LlamaTokenizer

__all__ = ["Llama"]


class Llama:
    """Blocking API over the continuous-batching engine; see allama.Llama for the parameters."""

    def __init__(self, model_path: str | os.PathLike[str], **params: Any) -> None:
        self._llm = AsyncLlama(model_path, **params)
        self._params = params
        self._sequential: SequentialContext | None = None
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self.model_path = self._llm.model_path
        self.metadata = self._llm.metadata
        self.verbose = self._llm.verbose

    @property
    def async_llama(self) -> AsyncLlama:
        """The async object behind this one (same engine)."""
        return self._llm

    def create_completion(self, prompt: Any, **kwargs: Any) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """As allama.Llama.create_completion; with stream=True, a generator of chunks."""
        if kwargs.get("stream"):
            return self._stream(partial(self._llm.create_completion, prompt, **kwargs))
        return self._portal.call(partial(self._llm.create_completion, prompt, **kwargs))

    __call__ = create_completion

    def create_chat_completion(self, messages: Any, **kwargs: Any) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """As allama.Llama.create_chat_completion; with stream=True, a generator of chunks."""
        if kwargs.get("stream"):
            return self._stream(partial(self._llm.create_chat_completion, messages, **kwargs))
        return self._portal.call(partial(self._llm.create_chat_completion, messages, **kwargs))

    def _stream(self, start: Any) -> Iterator[dict[str, Any]]:
        stream = self._portal.call(start)
        try:
            while True:
                try:
                    chunk = self._portal.call(stream.__anext__)
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            self._portal.call(stream.aclose)

    def create_embedding(self, input: Any, **kwargs: Any) -> Any:
        """As allama.Llama.create_embedding; with stream=True, a generator of items."""
        if kwargs.get("stream"):
            return self._stream(partial(self._llm.create_embedding, input, **kwargs))
        return self._portal.call(partial(self._llm.create_embedding, input, **kwargs))

    def embed(self, input: Any, **kwargs: Any) -> Any:
        """As allama.Llama.embed (normalize=False, truncate=True, return_count=False)."""
        if kwargs.get("stream"):
            return self._stream(partial(self._llm.embed, input, **kwargs))
        return self._portal.call(partial(self._llm.embed, input, **kwargs))

    def rerank(self, query: str, documents: Sequence[str], **kwargs: Any) -> dict[str, Any]:
        return self._portal.call(partial(self._llm.rerank, query, documents, **kwargs))

    # plain calls
    def tokenize(self, text: bytes | str, add_bos: bool = True, special: bool = False) -> list[int]:
        return self._llm.tokenize(text, add_bos, special)

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        return self._llm.detokenize(tokens, prev_tokens, special)

    def n_ctx(self) -> int:
        return self._llm.n_ctx()

    def n_vocab(self) -> int:
        return self._llm.n_vocab()

    def n_embd(self) -> int:
        return self._llm.n_embd()

    def token_bos(self) -> int:
        return self._llm.token_bos()

    def token_eos(self) -> int:
        return self._llm.token_eos()

    def token_nl(self) -> int:
        return self._llm.token_nl()

    def set_seed(self, seed: int) -> None:
        """The seed of requests that do not pass their own."""
        self._llm._seed = seed
        if self._sequential is not None:
            self._sequential.seed = seed

    def tokenizer(self) -> LlamaTokenizer:
        return LlamaTokenizer(self)

    # --- llama-cpp-python's single-sequence API (a private context; see allama.sequential) ---

    def _seq(self) -> SequentialContext:
        if self._sequential is None:
            p = self._params
            cpu = os.cpu_count() or 1
            self._sequential = SequentialContext(
                self._llm._model, self._llm.n_ctx(), p.get("n_batch", 512),
                p.get("n_threads") or max(cpu // 2, 1), p.get("n_threads_batch") or cpu,
                bool(p.get("logits_all", False)), self._llm._seed, bool(p.get("flash_attn", False)))
        return self._sequential

    @property
    def n_tokens(self) -> int:
        return self._sequential.n_tokens if self._sequential is not None else 0

    @property
    def input_ids(self) -> Any:
        return self._seq().input_ids

    @property
    def scores(self) -> Any:
        return self._seq().scores

    @property
    def _input_ids(self) -> Any:
        return self._seq().input_ids[: self.n_tokens]

    @property
    def _scores(self) -> Any:
        seq = self._seq()
        return seq.scores[: self.n_tokens] if seq.logits_all else seq.scores

    @property
    def logits_all(self) -> bool:
        return self._seq().logits_all

    def eval(self, tokens: Sequence[int]) -> None:
        """Appends tokens to the single-sequence history (llama-cpp-python's eval)."""
        self._seq().eval(tokens)

    def reset(self) -> None:
        if self._sequential is not None:
            self._sequential.reset()

    def _chain(self, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, typical_p: float = 1.0,
               temp: float = 0.80, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
               presence_penalty: float = 0.0, mirostat_mode: int = 0, mirostat_eta: float = 0.1,
               mirostat_tau: float = 5.0, grammar: Any = None, **_ignored: Any) -> Any:
        seq = self._seq()
        seed = seq.seed if seq.seed != LLAMA_DEFAULT_SEED else LLAMA_DEFAULT_SEED
        return seq.chain(
            top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, temperature=temp,
            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            penalty_last_n=self._llm.last_n_tokens_size, mirostat_mode=mirostat_mode, mirostat_eta=mirostat_eta,
            mirostat_tau=mirostat_tau, seed=seed,
            grammar="" if grammar is None else str(grammar))

    def sample(self, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, typical_p: float = 1.0,
               temp: float = 0.80, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
               presence_penalty: float = 0.0, tfs_z: float = 1.0, mirostat_mode: int = 0,
               mirostat_eta: float = 0.1, mirostat_tau: float = 5.0, penalize_nl: bool = True,
               logits_processor: Any = None, grammar: Any = None, idx: int | None = None) -> int:
        """Samples the next token from the last evaluated logits (llama-cpp-python's sample)."""
        chain = self._chain(top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, temp=temp,
                            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                            presence_penalty=presence_penalty, mirostat_mode=mirostat_mode,
                            mirostat_eta=mirostat_eta, mirostat_tau=mirostat_tau, grammar=grammar)
        return self._seq().sample(chain, logits_processor)

    def generate(self, tokens: Sequence[int], top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 typical_p: float = 1.0, temp: float = 0.80, repeat_penalty: float = 1.0, reset: bool = True,
                 frequency_penalty: float = 0.0, presence_penalty: float = 0.0, tfs_z: float = 1.0,
                 mirostat_mode: int = 0, mirostat_tau: float = 5.0, mirostat_eta: float = 0.1,
                 penalize_nl: bool = True, logits_processor: Any = None, stopping_criteria: Any = None,
                 grammar: Any = None) -> Iterator[int]:
        """Evaluates `tokens`, then yields sampled tokens forever (llama-cpp-python's generate)."""
        chain = self._chain(top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, temp=temp,
                            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                            presence_penalty=presence_penalty, mirostat_mode=mirostat_mode,
                            mirostat_eta=mirostat_eta, mirostat_tau=mirostat_tau, grammar=grammar)
        if reset:
            chain.reset()
        return self._seq().generate(tokens, chain, reset, logits_processor, stopping_criteria)

    def save_state(self) -> LlamaState:
        return self._seq().save_state()

    def load_state(self, state: LlamaState) -> None:
        self._seq().load_state(state)

    def stats(self) -> EngineStats:
        return self._llm.stats()

    def close(self) -> None:
        self._llm.close()
        if self._portal_cm is not None:
            self._portal_cm.__exit__(None, None, None)
            self._portal_cm = None

    def __enter__(self) -> "Llama":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
