"""A thread beside the decode thread that runs one job at a time: turning the last step's
deferred tokens into outputs while the decode thread decodes the next step with the GIL
released. That Python work then leaves the step's critical path, and the hand-over costs the
decode thread no wake-up of its own: by the time its decode returns, the job has usually
ended, and waiting for it is taking a free lock."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from allama.engine.process_hooks import block_interrupts


class OutputThread:
    """Runs jobs handed over with start(); wait() returns once the last one has ended."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._running = threading.Lock()  # held from start() until the job has ended
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="allama-outputs", daemon=True)
        self._thread.start()

    def start(self, job: Callable[[], None]) -> None:
        """Runs `job` on the thread; the caller must wait() before the next start()."""
        self._running.acquire()
        self._jobs.put(job)

    def wait(self) -> None:
        """Returns once the job has ended; raises what it raised."""
        self._running.acquire()
        self._running.release()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def stop(self, timeout: float | None = None) -> None:
        """Ends the thread (after a running job)."""
        self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        block_interrupts()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting decode thread
                self._error = exc
            finally:
                self._running.release()
