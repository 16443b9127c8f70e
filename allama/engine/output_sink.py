"""The event-loop side of a request: outputs arrive here from the decode thread."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from allama.engine.loop_handle import LoopEvent, running_loop_event


class OutputSink:
    """Buffers a request's outputs; `get()` waits for the next one.

    `push` runs on the event loop thread (posted by the decode thread), so no
    locking is needed. A sink made with `eager=False` (a caller that wants only the
    whole result) wakes its waiter only when a choice finishes or fails, not for
    every token, sparing the event loop a task switch per token.
    """

    __slots__ = ("_items", "_waiter", "_eager", "wakeups", "_loop")

    def __init__(self, eager: bool = True) -> None:
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | LoopEvent | None = None
        self._eager = eager
        self.wakeups = 0
        # made by the request's caller, on the loop that reads it: under asyncio, waits are bare
        # futures of that loop (the cheapest wake-up it has; a stream waits once per token)
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def push(self, outputs: list[Any], final: bool = False) -> None:
        self._items.extend(outputs)
        waiter = self._waiter
        if waiter is not None and (self._eager or final):
            self._waiter = None
            self.wakeups += 1
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():  # (cancelled with its reader)
                    waiter.set_result(None)
            else:
                waiter.set()

    async def get(self) -> Any:
        while not self._items:
            if self._loop is not None:
                future = self._waiter = self._loop.create_future()
                await future
            else:
                event = self._waiter = running_loop_event()
                await event.wait()
        return self._items.popleft()
