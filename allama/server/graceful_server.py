"""GracefulServer: uvicorn's server with the exit a service manager expects.

uvicorn drains on the first SIGINT/SIGTERM (stops accepting, lets running requests finish)
and force-exits on a second SIGINT, but then re-raises the signal at itself, so a clean
drain ends as "killed by SIGTERM" or with a KeyboardInterrupt traceback; and requests still
running at its timeout are cancelled mid-response, each logged with a traceback. Here the
signals are only recorded (`allama serve` returns 0 after a drain), and when the drain
timeout passes the models are closed instead: running requests end with an
EngineClosedError (an error event in a stream, a 503 otherwise) and their connections close
normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn


AFTER_CLOSE_SECONDS = 5.0  # how long requests get to send their error once the models are closed


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_timeout: float) -> None:
        config.timeout_graceful_shutdown = int(drain_timeout + AFTER_CLOSE_SECONDS)
        super().__init__(config)
        self.drain_timeout = drain_timeout

    async def shutdown(self, sockets: Any = None) -> None:
        registry = getattr(getattr(self.config.app, "state", None), "registry", None)
        closer = None
        if registry is not None:
            async def close_models_after_drain() -> None:
                await asyncio.sleep(self.drain_timeout)
                await registry.aclose()

            closer = asyncio.ensure_future(close_models_after_drain())
        try:
            await super().shutdown(sockets)
        finally:
            if closer is not None:
                closer.cancel()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
