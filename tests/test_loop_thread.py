"""LoopThread, the blocking twin's event loop: Ctrl-C in the middle of a stream's step
reaches the caller as KeyboardInterrupt, and the stream is still closed (its request
cancelled), even while the cancelled step is unwinding on the loop."""

from __future__ import annotations

import _thread
import asyncio
import signal
import threading

import pytest

from allama.loop_thread import LoopThread


class SlowStream:
    """An async stream whose steps take a while, and whose cancellation takes a while too."""

    def __init__(self) -> None:
        self.closed = False
        self.running = False

    def __aiter__(self) -> "SlowStream":
        return self

    async def __anext__(self) -> int:
        self.running = True
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.sleep(0.2))  # unwinding is not instant
            raise
        finally:
            self.running = False
        return 1

    async def aclose(self) -> None:
        if self.running:  # what an async generator says when closed while it runs
            raise RuntimeError("aclose(): asynchronous generator is already running")
        self.closed = True


def test_ctrl_c_during_a_step_raises_keyboard_interrupt_and_closes_the_stream():
    loop = LoopThread("test-loop")
    stream = SlowStream()
    # Ctrl-C raises KeyboardInterrupt, even where this runs in a background job, which inherits
    # an ignored SIGINT (interrupt_main() then does nothing)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            for _ in loop.iterate(stream):
                pass
        assert stream.closed
        assert loop.call(lambda: 42) == 42  # the loop serves on
    finally:
        signal.signal(signal.SIGINT, previous)
        loop.close(2)
