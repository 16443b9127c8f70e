"""LoopThread, the blocking twin's event loop: Ctrl-C in the middle of a stream's step
reaches the caller as KeyboardInterrupt, and the stream is still closed (its request
cancelled), even while the cancelled step is unwinding on the loop."""

from __future__ import annotations

import _thread
import asyncio
import signal
import threading
import time

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


class CountingStream:
    """An async stream of `n` numbers (or an error after `fail_after` of them) that records
    which task read each one and whether it was closed."""

    def __init__(self, n: int, fail_after: int | None = None, delay: float = 0.0) -> None:
        self.n = n
        self.fail_after = fail_after
        self.delay = delay
        self.sent = 0
        self.readers: set[asyncio.Task] = set()
        self.closed = False

    def __aiter__(self) -> "CountingStream":
        return self

    async def __anext__(self) -> int:
        self.readers.add(asyncio.current_task())
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_after is not None and self.sent == self.fail_after:
            raise ValueError("the stream failed")
        if self.sent == self.n:
            raise StopAsyncIteration
        self.sent += 1
        return self.sent

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def loop_thread():
    loop = LoopThread("test-loop")
    yield loop
    loop.close(2)


def test_one_task_reads_a_whole_stream_and_closes_it(loop_thread):
    stream = CountingStream(50)
    assert list(loop_thread.iterate(stream)) == list(range(1, 51))
    assert len(stream.readers) == 1  # not a task (and a wake-up of the loop) per chunk
    assert stream.closed


def test_a_stream_error_is_raised_after_the_chunks_before_it(loop_thread):
    stream = CountingStream(50, fail_after=3)
    got = []
    with pytest.raises(ValueError, match="the stream failed"):
        for chunk in loop_thread.iterate(stream):
            got.append(chunk)
    assert got == [1, 2, 3] and stream.closed


def test_leaving_early_closes_the_stream_before_the_generator_ends(loop_thread):
    stream = CountingStream(10_000, delay=0.001)
    chunks = loop_thread.iterate(stream)
    assert [next(chunks), next(chunks)] == [1, 2]
    chunks.close()
    assert stream.closed and stream.sent < 10_000
    assert loop_thread.call(lambda: 42) == 42


def test_closing_the_loop_ends_a_caller_waiting_on_a_stream(loop_thread):
    from allama.errors import EngineClosedError

    stream = CountingStream(10**9, delay=0.01)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            for _ in loop_thread.iterate(stream):
                pass
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    while stream.sent < 3:
        threading.Event().wait(0.01)
    loop_thread.close(2)
    reader.join(10)
    assert not reader.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], EngineClosedError), outcome


def test_a_generator_closed_on_the_loop_thread_does_not_block_the_loop(loop_thread):
    # (as when the garbage collector finalises an abandoned generator on the loop's thread)
    stream = CountingStream(10_000, delay=0.001)
    chunks = loop_thread.iterate(stream)
    assert next(chunks) == 1
    closer = threading.Thread(target=loop_thread.call, args=(chunks.close,), daemon=True)
    closer.start()
    closer.join(1.0)
    assert not closer.is_alive()
    deadline = time.monotonic() + 5
    while not stream.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.closed


class StuckClosingStream(CountingStream):
    """A stream whose aclose() never returns."""

    async def aclose(self) -> None:
        await asyncio.Event().wait()


def test_leaving_early_waits_a_bounded_time_for_a_stream_that_never_closes(loop_thread, monkeypatch):
    from allama.engine import process_hooks

    monkeypatch.setattr(process_hooks, "EXIT_TIMEOUT", 0.3)
    chunks = loop_thread.iterate(StuckClosingStream(10_000, delay=0.001))
    assert next(chunks) == 1
    leaver = threading.Thread(target=chunks.close, daemon=True)
    leaver.start()
    leaver.join(3.0)
    assert not leaver.is_alive()
