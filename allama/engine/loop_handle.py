"""A thread-safe way to run a callback on the event loop that made a request.

The engine's decode thread hands each step's outputs to every waiting event loop
with one call per loop (asyncio's `call_soon_threadsafe`, trio's
`run_sync_soon`). The loop is captured per request, never at construction, so
one model can serve several loops.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


_NO_LOOP = "allama's async API needs a running asyncio or trio event loop"


class LoopEvent(Protocol):
    """Set once, from the loop's own thread; `wait()` gives what to await."""

    def set(self) -> None: ...
    def wait(self) -> Awaitable[Any]: ...


class FutureEvent:
    """An asyncio event for one waiter: a bare future (asyncio.Event adds a waiter list and a
    coroutine frame to each wait: 5.9 against 4.8 µs here, and a stream waits once per token)."""

    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future = loop.create_future()

    def set(self) -> None:
        if not self._future.done():  # (cancelled when its waiter was)
            self._future.set_result(None)

    def wait(self) -> Awaitable[None]:
        return self._future


def running_loop_event() -> LoopEvent:
    """A new event of the running loop's own kind (asyncio's or trio's), for one waiter. What
    anyio.Event() makes, minus its backend lookup, and minus the import of anyio's asyncio
    backend that the first anyio.Event() of a process costs (about 45 ms, paid by the first
    request)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        trio = sys.modules.get("trio")
        if trio is None:
            raise RuntimeError(_NO_LOOP) from None
        return trio.Event()
    return FutureEvent(loop)


class LoopHandle:
    __slots__ = ("key", "_post")

    def __init__(self, key: object, post: Callable[..., Any]) -> None:
        self.key = key
        self._post = post

    @classmethod
    def current(cls) -> "LoopHandle":
        """The handle of the running event loop (asyncio or trio)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return cls(loop, loop.call_soon_threadsafe)
        trio = sys.modules.get("trio")
        if trio is not None:
            try:
                token = trio.lowlevel.current_trio_token()
            except RuntimeError:
                pass
            else:
                return cls(token, token.run_sync_soon)
        raise RuntimeError(_NO_LOOP)

    def post(self, callback: Callable[..., Any], *args: Any) -> None:
        """Schedules callback(*args) on the loop; raises RuntimeError if the loop is closed."""
        self._post(callback, *args)
