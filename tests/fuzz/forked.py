"""Runs a function on many inputs, each in a child forked from one prepared parent, so that
a native abort or hang ends only that child. For inputs that may reach llama.cpp."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ForkedReport:
    ok: int = 0
    crashed: list[tuple[Any, str]] = field(default_factory=list)
    hung: list[Any] = field(default_factory=list)


def run_forked(fn: Callable[[Any], None], inputs: Iterable[Any], timeout: float = 20.0) -> ForkedReport:
    """fn(x) in a fresh child per input. The child exits 0 unless fn raises something other
    than the Exceptions it is allowed to raise (fn decides) or the process dies."""
    report = ForkedReport()
    for item in inputs:
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                fn(item)
            except BaseException:  # noqa: BLE001 - fn raises only what it does not expect
                import traceback

                traceback.print_exc()
                code = 3
            os._exit(code)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                report.hung.append(item)
                status = None
                break
            time.sleep(0.005)
        if status is None:
            continue
        if os.WIFSIGNALED(status):
            report.crashed.append((item, signal.Signals(os.WTERMSIG(status)).name))
        elif os.WEXITSTATUS(status) != 0:
            report.crashed.append((item, f"exit {os.WEXITSTATUS(status)}"))
        else:
            report.ok += 1
    return report
