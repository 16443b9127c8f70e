"""A function run on the decode thread for a caller on an event loop.

Session operations (open, close, save and load a sequence's KV) touch the native
context, so they run on the decode thread between steps; the caller awaits the
result. The wait is shielded from cancellation: the operation is short (at most one
step away) and, once queued, happens anyway, so its result must not be lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from allama.engine.loop_handle import LoopHandle


class EngineCall:
    __slots__ = ("fn", "loop", "result", "error", "_done")

    def __init__(self, fn: Callable[[], Any], loop: LoopHandle | None) -> None:
        self.fn = fn
        self.loop = loop          # None: nobody waits (fire and forget)
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = anyio.Event() if loop is not None else None

    def run(self) -> None:
        """Decode thread: runs the function and wakes the caller."""
        try:
            self.result = self.fn()
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc
        self._wake()

    def fail(self, error: BaseException) -> None:
        """Decode thread: the engine closed before the call ran."""
        self.error = error
        self._wake()

    def _wake(self) -> None:
        if self.loop is None or self._done is None:
            return
        try:
            self.loop.post(self._done.set)
        except RuntimeError:  # the caller's loop is closed
            pass

    async def wait(self) -> Any:
        assert self._done is not None
        with anyio.CancelScope(shield=True):
            await self._done.wait()
        if self.error is not None:
            raise self.error
        return self.result
