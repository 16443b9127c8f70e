"""LoopThread: a private asyncio event loop in a daemon thread, through which the blocking
twin (allama.sync) runs the async API.

Unlike a blocking portal whose thread is not a daemon, it never keeps the process alive:
process_hooks stops it at exit. A call waits in the caller's thread, so Ctrl-C there
interrupts the wait: the call's task is cancelled (the engine frees its request at the
next step) and KeyboardInterrupt is raised in the caller, as a blocking call should.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from allama.engine import process_hooks
from allama.errors import AllamaError, EngineClosedError

T = TypeVar("T")


class LoopThread:
    """An event loop running in its own daemon thread until close()."""

    def __init__(self, name: str = "allama-sync-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._closed = False
        self._forked = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        process_hooks.track(self)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
            pending = [task for task in asyncio.all_tasks(self._loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.wait(pending, timeout=process_hooks.EXIT_TIMEOUT))
            # Streams a caller left half read are closed here, while the interpreter is whole:
            # otherwise garbage collection finalises them later, on a free-threaded CPython at
            # its last collection, when asyncio's modules are already torn down.
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()

    @property
    def closed(self) -> bool:
        return self._closed or process_hooks.exit_started.is_set()

    def _check_usable(self) -> None:
        if self._forked:
            raise AllamaError("this model was loaded in the parent process before fork(); load it in the "
                              "child, or use multiprocessing's 'spawn' start method")
        if self.closed:
            raise EngineClosedError("the model is closed")

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) on the loop, awaited if it returns an awaitable; its result or its exception."""
        self._check_usable()

        async def run() -> Any:
            result = fn(*args)
            return await result if inspect.isawaitable(result) else result

        future: concurrent.futures.Future[Any] | None = None
        try:
            future = asyncio.run_coroutine_threadsafe(run(), self._loop)
            while True:
                # Short waits: a signal that lands on another thread (the kernel picks any thread
                # that does not block it) still reaches this one's handler within a tick.
                try:
                    return future.result(timeout=0.05)
                except concurrent.futures.TimeoutError:
                    continue
        except KeyboardInterrupt:
            if future is not None:
                future.cancel()  # cancels the task on the loop: the engine drops the request
            raise

    def iterate(self, stream: AsyncIterator[T]) -> Iterator[T]:
        """The chunks of an async stream as a generator.

        One task on the loop reads the stream and hands each chunk over as it comes: a chunk
        costs a wake-up of the caller's thread only, where a call per chunk would wake the
        loop's thread too. Leaving early (break, an exception, Ctrl-C, the generator dropped)
        cancels that task, which closes the stream (cancelling its request) before the
        generator finishes."""
        self._check_usable()
        handoff: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        reader = asyncio.run_coroutine_threadsafe(_read_into(stream, handoff), self._loop)
        closed = False
        try:
            while True:
                kind, value = self._take(handoff)
                if kind == _CHUNK:
                    yield value
                    continue
                closed = True  # _CLOSED, with the stream's error if it failed
                if value is None:
                    return
                if isinstance(value, asyncio.CancelledError):  # not cancelled by this generator
                    raise EngineClosedError("the model was closed")
                raise value
        finally:
            if not closed and not self.closed:  # (a closed loop has cancelled the task itself)
                reader.cancel()  # the reading task's cancellation closes the stream
                if threading.get_ident() != self._thread.ident:  # (on the loop, waiting would block it)
                    self._await_closed(handoff)

    def _take(self, handoff: queue.SimpleQueue[tuple[int, Any]], deadline: float = math.inf) -> tuple[int, Any]:
        """The next item the reading task handed over, or (_CLOSED, None) once `deadline`
        (time.monotonic()) has passed. Short waits: a signal that lands on another thread (the
        kernel picks any thread that does not block it) still reaches this one's handler within
        a tick. EngineClosedError once the loop's thread has ended with nothing more to hand over."""
        while (left := deadline - time.monotonic()) > 0:
            try:
                return handoff.get(timeout=min(left, 0.05))
            except queue.Empty:
                if not self._thread.is_alive() or self._forked:
                    try:
                        return handoff.get_nowait()
                    except queue.Empty:
                        raise EngineClosedError("the model is closed") from None
        return _CLOSED, None

    def _await_closed(self, handoff: queue.SimpleQueue[tuple[int, Any]]) -> None:
        """Waits, at most EXIT_TIMEOUT, until the reading task has closed its stream."""
        deadline = time.monotonic() + process_hooks.EXIT_TIMEOUT
        try:
            while self._take(handoff, deadline)[0] != _CLOSED:
                pass
        except EngineClosedError:
            pass

    def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        if self._forked:
            return
        try:
            self._loop.call_soon_threadsafe(self._loop.stop)
        except RuntimeError:  # already closed
            return
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def stop_for_exit(self, timeout: float) -> None:
        self.close(timeout)

    def mark_forked(self) -> None:
        self._forked = True


# what the reading task of iterate() hands over: a chunk; the stream closed, always last, with
# the error it failed with (CancelledError when the task was cancelled) or None
_CHUNK, _CLOSED = 0, 1


async def _read_into(stream: AsyncIterator[Any], handoff: queue.SimpleQueue[tuple[int, Any]]) -> None:
    """Reads the stream to its end into `handoff`, then closes it."""
    error: BaseException | None = None
    try:
        async for chunk in stream:
            handoff.put((_CHUNK, chunk))
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread (cancellation too)
        error = exc
    finally:
        try:
            await stream.aclose()  # type: ignore[attr-defined]
        finally:
            handoff.put((_CLOSED, error))
