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
import threading
import time
from collections.abc import AsyncIterator, Callable
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

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) on the loop, awaited if it returns an awaitable; its result or its exception."""
        if self._forked:
            raise AllamaError("this model was loaded in the parent process before fork(); load it in the "
                              "child, or use multiprocessing's 'spawn' start method")
        if self.closed:
            raise EngineClosedError("the model is closed")

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

    def iterate(self, stream: AsyncIterator[T]) -> Any:
        """The chunks of an async stream as a generator; leaving it early (break, an exception,
        Ctrl-C, the generator dropped) closes the stream, which cancels its request."""
        try:
            while True:
                try:
                    chunk = self.call(stream.__anext__)
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            if not self.closed:
                self._close_stream(stream)

    def _close_stream(self, stream: AsyncIterator[Any]) -> None:
        """stream.aclose() on the loop. After a Ctrl-C, the cancelled __anext__ may still be
        unwinding there: aclose() then says the generator is running; it is retried until the
        cancellation has landed (the KeyboardInterrupt, not that error, reaches the caller)."""
        deadline = time.monotonic() + process_hooks.EXIT_TIMEOUT
        while True:
            try:
                self.call(stream.aclose)  # type: ignore[attr-defined]
                return
            except EngineClosedError:
                return
            except RuntimeError as exc:
                if "already running" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

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
