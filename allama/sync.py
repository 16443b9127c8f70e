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
from allama.llama import Llama as AsyncLlama

__all__ = ["Llama"]


class Llama:
    """Blocking API over the continuous-batching engine; see allama.Llama for the parameters."""

    def __init__(self, model_path: str | os.PathLike[str], **params: Any) -> None:
        self._llm = AsyncLlama(model_path, **params)
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

    def reset(self) -> None:
        self._llm.reset()

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
