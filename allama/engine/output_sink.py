"""The event-loop side of a request: outputs arrive here from the decode thread."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from allama.engine.loop_handle import LoopWaiter, running_loop_waiter, waiter_maker


class OutputSink:
    """Buffers a request's outputs; `get()` waits for the next one.

    `push` runs on the event loop thread (posted by the decode thread), so no
    locking is needed. A sink made with `eager=False` (a caller that wants only the
    whole result) wakes its waiter only when a choice finishes or fails, not for
    every token, sparing the event loop a task switch per token.
    """

    __slots__ = ("_items", "_waiter", "eager", "wakeups", "_new_waiter")

    def __init__(self, eager: bool = True) -> None:
        self._items: deque[Any] = deque()
        self._waiter: LoopWaiter | None = None
        self.eager = eager  # the reader takes outputs as they come (a stream), not only the last
        self.wakeups = 0
        # made by the request's caller, on the loop that reads it: the loop is looked up once,
        # not at every wait (outside a loop, at every wait)
        self._new_waiter: Callable[[], LoopWaiter]
        try:
            self._new_waiter = waiter_maker()
        except RuntimeError:
            self._new_waiter = running_loop_waiter

    def push(self, outputs: list[Any], final: bool = False) -> None:
        self._items.extend(outputs)
        waiter = self._waiter
        if waiter is not None and (self.eager or final):
            self._waiter = None
            self.wakeups += 1
            if not waiter.done():  # (cancelled with its reader)
                waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter = self._new_waiter()
            await waiter
        return self._items.popleft()
