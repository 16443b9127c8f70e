"""The files in examples/, imported as modules or run as the processes users start."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType

import anyio
from anyio.abc import Process

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
SERVING_URL = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")


def load_example(name: str) -> ModuleType:
    """Imports examples/<name>.py, a script outside any package."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Quart finds an app's root path through sys.modules
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def running_example(name: str, model: Path, log: Path) -> AsyncIterator[str]:
    """Runs `python examples/<name>.py --model MODEL --port 0` and yields the URL it serves.

    On leaving, stops it with SIGINT (Ctrl-C) and checks that it shut down cleanly.
    """
    command = [sys.executable, str(EXAMPLES_DIR / f"{name}.py"), "--model", str(model), "--port", "0"]
    with log.open("wb") as output:
        process = await anyio.open_process(command, stdout=output, stderr=output,
                                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield await _serving_url(process, log)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        with anyio.move_on_after(30):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, log.read_text(errors="replace")


async def _serving_url(process: Process, log: Path) -> str:
    # Generous: the first import of an editable allama may rebuild the extension.
    with anyio.fail_after(60):
        while True:
            output = log.read_text(errors="replace")
            if found := SERVING_URL.search(output):
                return found.group(1)
            assert process.returncode is None, f"the example exited early:\n{output}"
            await anyio.sleep(0.05)
