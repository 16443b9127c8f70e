"""A thread-safe way to run a callback on the event loop that made a request.

The engine's decode thread hands each step's outputs to every waiting event loop
with one call per loop (asyncio's `call_soon_threadsafe`, trio's
`run_sync_soon`). The loop is captured per request, never at construction, so
one model can serve several loops.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Generator
from typing import Any, Protocol


_NO_LOOP = "allama's async API needs a running asyncio or trio event loop"


class LoopWaiter(Protocol):
    """A one-shot wake-up for one waiting task, set from the loop's own thread: awaited once,
    `set_result(None)` unless `done()` (a cancelled waiter is done)."""

    def done(self) -> bool: ...
    def set_result(self, result: None) -> None: ...
    def __await__(self) -> Generator[Any, None, Any]: ...


class TrioWaiter:
    """A LoopWaiter on a trio.Event."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = sys.modules["trio"].Event()

    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, result: None) -> None:
        self._event.set()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._event.wait().__await__()


def waiter_maker() -> Callable[[], LoopWaiter]:
    """What makes waiters of the running loop's own kind, bound to that loop once for a caller
    that waits many times: under asyncio the loop's own futures (asyncio.Event adds a waiter
    list and a coroutine frame to every wait, and a stream waits once per token). Unlike
    anyio.Event(), no backend lookup per wait, and no import of anyio's asyncio backend, which
    the first anyio.Event() of a process costs (about 45 ms, paid by the first request)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        if "trio" not in sys.modules:
            raise RuntimeError(_NO_LOOP) from None
        return TrioWaiter
    return loop.create_future


def running_loop_waiter() -> LoopWaiter:
    """A new waiter of the running loop's own kind."""
    return waiter_maker()()


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
