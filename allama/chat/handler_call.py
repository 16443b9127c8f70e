"""Calling a chat completion handler: async ones on the event loop, blocking ones off it.

llama-cpp-python's handlers are plain functions that call `llama.create_completion(...)` and
return a response dict, or with `stream=True` an iterator of chunks. Such a handler runs in a
worker thread, so it never stalls the event loop; the `llama` it is given is a blocking view
of the Llama (its coroutine methods run on the request's event loop and return their
results, streams come back as iterators), and an iterator it returns is read in worker
threads and handed on as an AsyncStream. A coroutine function (or an object whose
`__call__` is one), and a handler marked `on_event_loop = True` (it does not block, and may
return an awaitable), are called on the event loop with the Llama itself.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from allama.stream import AsyncStream


def runs_on_event_loop(handler: Any) -> bool:
    """Whether `handler` is called on the event loop (async, or marked `on_event_loop`)."""
    if getattr(handler, "on_event_loop", False):
        return True
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None))


async def call_chat_handler(handler: Any, *, llama: Any, **request: Any) -> Any:
    """`handler(llama=llama, **request)`'s response: a dict, or with stream=True an AsyncStream."""
    if runs_on_event_loop(handler):
        result = handler(llama=llama, **request)
    else:
        call = functools.partial(handler, llama=BlockingLlama(llama), **request)
        result = await anyio.to_thread.run_sync(call)
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, Iterator) and not isinstance(result, dict):
        return AsyncStream(_read_in_threads(result))
    return result


async def _read_in_threads(chunks: Iterator[Any]) -> AsyncIterator[Any]:
    """The items of a blocking iterator, each `next()` in a worker thread; closed when left."""
    done = object()
    try:
        while True:
            item = await anyio.to_thread.run_sync(next, chunks, done)
            if item is done:
                return
            yield item
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(close)


class BlockingLlama:
    """A Llama as a blocking handler sees it, from an AnyIO worker thread: coroutine methods
    (`create_completion`, `__call__`, ...) block until done on the Llama's event loop, and
    streams they return are iterators. Everything else is the Llama's own attribute."""

    def __init__(self, llama: Any) -> None:
        object.__setattr__(self, "_llama", llama)

    @property
    def async_llama(self) -> Any:
        """The Llama behind this view."""
        return self._llama

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._llama, name)
        if inspect.iscoroutinefunction(value):
            return functools.wraps(value)(functools.partial(_blocking_call, value))
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._llama, name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _blocking_call(self._llama.create_completion, *args, **kwargs)


def _blocking_call(method: Any, *args: Any, **kwargs: Any) -> Any:
    result = anyio.from_thread.run(functools.partial(method, *args, **kwargs))
    if hasattr(result, "__anext__"):
        return _blocking_iterator(result)
    return result


def _blocking_iterator(stream: Any) -> Iterator[Any]:
    try:
        while True:
            try:
                yield anyio.from_thread.run(stream.__anext__)
            except StopAsyncIteration:
                return
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            try:
                anyio.from_thread.run(close)
            except RuntimeError:  # closed outside a worker thread (garbage collection): the stream frees itself
                pass
