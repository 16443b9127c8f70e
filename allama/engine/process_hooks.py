"""What allama's threads do when the process exits or forks.

Every engine (its decode thread) and every blocking twin's event-loop thread registers
here. At exit, before the interpreter starts finalising, they are stopped and joined:
a thread that is still inside llama.cpp when CPython tears down would be killed on its
way back into Python, which aborts the process ("terminate called without an active
exception"), and a non-daemon thread would keep it alive forever. In a child made by
fork(), the threads do not exist (fork copies only the calling thread), so every engine
inherited from the parent refuses work with a clear error instead of deadlocking.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import weakref
from typing import Protocol

EXIT_TIMEOUT = 2.0  # seconds each thread gets to stop at exit


class Stoppable(Protocol):
    def stop_for_exit(self, timeout: float) -> None: ...

    def mark_forked(self) -> None: ...


_live: "weakref.WeakSet[Stoppable]" = weakref.WeakSet()
_lock = threading.Lock()
# Set once the interpreter runs its exit hooks. An Event, not a flag: finalizers (__del__) bind
# it as a default argument, since a free-threaded CPython may collect an object only at the
# interpreter's last collection, when module names read None (and what the object would free
# has been stopped already).
exit_started = threading.Event()


def track(thing: Stoppable) -> None:
    """Stop `thing` at exit and tell it about a fork, for as long as it is alive."""
    with _lock:
        _live.add(thing)


def block_interrupts() -> None:
    """Keeps SIGINT and SIGTERM away from the calling (engine) thread and the ggml workers it
    starts, so that the kernel delivers Ctrl-C to a thread that can act on it."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _stop_all() -> None:
    exit_started.set()
    with _lock:
        things = list(_live)
    for thing in things:
        try:
            thing.stop_for_exit(EXIT_TIMEOUT)
        except Exception:  # noqa: BLE001 - exit must go on whatever one of them does
            pass


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's lock may have been held by another thread
    for thing in list(_live):
        thing.mark_forked()


atexit.register(_stop_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
