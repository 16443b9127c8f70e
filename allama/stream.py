"""AsyncStream: what `await llm.create_completion(..., stream=True)` returns."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Generic, TypeVar

from allama.engine import process_hooks

T = TypeVar("T")


class AsyncStream(Generic[T]):
    """An async iterator of OpenAI-shaped chunks, like the OpenAI async client's.

    `async for chunk in stream`, `await stream.aclose()`, `async with stream`.
    Leaving early (break, aclose, cancellation) cancels the request in the
    engine; an engine error mid-stream is raised from `__anext__`.
    """

    def __init__(self, chunks: AsyncIterator[T], on_abandon: Callable[[], None] | None = None) -> None:
        self._chunks = chunks
        self._on_abandon = on_abandon

    def __del__(self, _exit_started: threading.Event = process_hooks.exit_started) -> None:
        # A stream dropped without being read to the end or closed still frees its request (at
        # exit the engine is stopped already: nothing to free).
        if not _exit_started.is_set():
            self.abandon()

    def abandon(self) -> None:
        """Frees the request without closing the iterator, as dropping the stream does (for a
        stream that wraps this one's chunks: it passes `on_abandon=inner.abandon`)."""
        if self._on_abandon is not None:
            self._on_abandon()

    def __aiter__(self) -> "AsyncStream[T]":
        return self

    def __anext__(self) -> Awaitable[T]:
        # the inner iterator's own awaitable: no coroutine of this one's per chunk
        return self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]
        self.abandon()

    async def __aenter__(self) -> "AsyncStream[T]":
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
