"""Runs one case in a child of a fork server that imported allama (and the server, and the
scenarios) once: a case costs a fork plus its own work (tens of milliseconds), a native abort
kills only its child, and a hang is killed at the timeout. Models load in the child."""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import forkserver
from typing import Any

PRELOAD = ["allama", "allama.server", "httpx", "tests.bad_input.scenarios"]
_CONTEXT = multiprocessing.get_context("forkserver")
_started = False


@dataclass
class Outcome:
    """How a case's child ended."""

    exitcode: int | None  # None: killed at the timeout (hung)
    raised: str | None  # the class of the exception the case raised, None if it returned
    bases: list[str]  # that class's MRO, by name
    message: str
    value: Any  # what the case returned
    stderr: str  # the child's stderr (an abort's message lands here)
    seconds: float
    reported: bool  # the child sent its result before it exited

    @property
    def died(self) -> str | None:
        """Why the child did not exit cleanly, or None."""
        if self.exitcode is None:
            return "hung (killed at the timeout)"
        if self.exitcode < 0:
            return f"killed by {signal.Signals(-self.exitcode).name}"
        if self.exitcode != 0:
            return f"exited with status {self.exitcode}"
        if not self.reported:
            return "exited without reporting a result"
        return None

    def is_a(self, name: str) -> bool:
        return name in self.bases

    def describe(self) -> str:
        what = self.died or (f"raised {self.raised}: {self.message}" if self.raised else f"returned {self.value!r}")
        return f"{what}\n--- child stderr (tail) ---\n{self.stderr[-3000:]}"


def _ensure_server() -> None:
    global _started
    if _started:
        return
    _CONTEXT.set_forkserver_preload(PRELOAD)
    # The children must not try to rebuild the extension, and an abort should not spend
    # seconds attaching gdb for a backtrace (its GGML_ASSERT line is enough).
    child_env = {"SKBUILD_EDITABLE_SKIP": "1", "GGML_NO_BACKTRACE": "1"}
    saved = {key: os.environ.get(key) for key in child_env}
    os.environ.update(child_env)
    try:
        forkserver.ensure_running()
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    _started = True


def _child(writer: Any, stderr_path: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    fd = os.open(stderr_path, os.O_WRONLY)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        message: tuple[Any, ...] = ("returned", fn(*args))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which judges it
        traceback.print_exc()
        message = ("raised", type(exc).__name__, [c.__name__ for c in type(exc).__mro__], str(exc)[:4000])
    try:
        writer.send(message)
    except Exception as exc:  # noqa: BLE001 - an unpicklable return value
        writer.send(("returned", f"<unpicklable {type(exc).__name__}>"))
    writer.close()


def run_case(fn: Callable[..., Any], *args: Any, timeout: float = 30.0) -> Outcome:
    """fn(*args) in a fresh child (fn: a module-level function of an importable module)."""
    _ensure_server()
    reader, writer = _CONTEXT.Pipe(duplex=False)
    fd, stderr_path = tempfile.mkstemp(prefix="bad-input-", suffix=".stderr")
    os.close(fd)
    start = time.monotonic()
    process = _CONTEXT.Process(target=_child, args=(writer, stderr_path, fn, args), daemon=True)
    try:
        process.start()
        writer.close()
        message: tuple[Any, ...] | None = None
        if reader.poll(timeout):
            try:
                message = reader.recv()
            except EOFError:  # the child died before it could report
                pass
        process.join(max(0.5, timeout - (time.monotonic() - start)))
        if process.is_alive():
            process.kill()
            process.join()
            exitcode = None
        else:
            exitcode = process.exitcode
        seconds = time.monotonic() - start
        with open(stderr_path, errors="replace") as f:
            stderr = f.read()
    finally:
        reader.close()
        os.unlink(stderr_path)
    raised, bases, text, value = None, [], "", None
    if message is not None and message[0] == "raised":
        raised, bases, text = message[1], message[2], message[3]
    elif message is not None:
        value = message[1]
    return Outcome(exitcode, raised, bases, text, value, stderr, seconds, message is not None)


def expect_raises(outcome: Outcome, name: str, *fragments: str) -> None:
    """The child ended cleanly, having raised `name` (or a subclass) with each fragment in its message."""
    assert outcome.died is None, outcome.describe()
    assert outcome.raised is not None and outcome.is_a(name), f"expected {name}; {outcome.describe()}"
    for fragment in fragments:
        assert fragment.lower() in outcome.message.lower(), f"{fragment!r} not in: {outcome.message}"


def expect_returns(outcome: Outcome) -> Any:
    """The child ended cleanly with a value (the input is accepted); returns that value."""
    assert outcome.died is None, outcome.describe()
    assert outcome.raised is None, f"expected a result; {outcome.describe()}"
    return outcome.value
