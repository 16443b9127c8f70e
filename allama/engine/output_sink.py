"""The event-loop side of a request: outputs arrive here from the decode thread."""

from __future__ import annotations

from collections import deque

import anyio

from allama.engine.request import Output


class OutputSink:
    """Buffers a request's outputs; `get()` waits for the next one.

    `push` runs on the event loop thread (posted by the decode thread), so no
    locking is needed.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Output] = deque()
        self._waiter: anyio.Event | None = None

    def push(self, outputs: list[Output]) -> None:
        self._items.extend(outputs)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    async def get(self) -> Output:
        while not self._items:
            self._waiter = anyio.Event()
            await self._waiter.wait()
        return self._items.popleft()

    def get_nowait(self) -> Output | None:
        return self._items.popleft() if self._items else None
