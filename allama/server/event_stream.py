"""Server-Sent Events as OpenAI sends them: `data: {json}` and a blank line per chunk,
`data: [DONE]` at the end, and `: ping` comments while a chunk is slow to come."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from allama.server.errors import api_error_from, error_body
from allama.stream import AsyncStream

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


# Characters that Python's str.splitlines (and so httpx's iter_lines) takes for line ends but
# JSON leaves unescaped: written as JSON escapes, a client that splits the stream into lines
# never cuts an event in two.
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def encode_event(payload: Any) -> bytes:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if "\x85" in text or "\u2028" in text or "\u2029" in text:
        text = text.translate(_LINE_BREAKS)
    try:
        data = text.encode()
    except UnicodeEncodeError:  # a lone surrogate (a JSON body may carry "\ud800"): escape it, as JSON does
        data = json.dumps(payload, separators=(",", ":")).encode()
    return b"data: " + data + b"\n\n"


class _ChunkPump:
    """Reads a stream's chunks in a task of its own, so that the response can send a ping
    while a chunk is slow to come. One task for the stream and a timer per wait: a task and an
    asyncio.wait per chunk cost the event loop about 15 µs a chunk more."""

    def __init__(self, chunks: AsyncStream[dict[str, Any]]) -> None:
        self.loop = asyncio.get_running_loop()
        self.ready: deque[dict[str, Any]] = deque()
        self.ended = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[object] | None = None
        self._task = self.loop.create_task(self._read(chunks))

    async def _read(self, chunks: AsyncStream[dict[str, Any]]) -> None:
        try:
            async for chunk in chunks:
                self.ready.append(chunk)
                self.wake(None)
        except Exception as exc:  # noqa: BLE001 - the response turns it into an error event
            self.error = exc
        finally:
            self.ended = True
            self.wake(None)

    def wake(self, value: object) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

    async def next_or_ping(self, ping_interval: float) -> object:
        """The next chunk; PING if none came within `ping_interval`; None at the end."""
        while not self.ready:
            if self.ended:
                if self.error is not None:
                    raise self.error
                return None
            waiter = self.waiter = self.loop.create_future()
            timer = self.loop.call_later(ping_interval, self.wake, PING)
            try:
                if await waiter is PING:
                    return PING
            finally:
                timer.cancel()
                self.waiter = None
        return self.ready.popleft()

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except BaseException:  # noqa: BLE001 - only its cancellation is expected here
            pass


async def _events(chunks: AsyncStream[dict[str, Any]], ping_interval: float | None) -> AsyncIterator[bytes]:
    """Each chunk as an event. Leaving early (the client disconnected: the server cancels
    this generator) closes `chunks`, which cancels the request in the engine at once."""
    pump = _ChunkPump(chunks) if ping_interval is not None else None
    try:
        if pump is None:
            async for chunk in chunks:
                yield encode_event(chunk)
        else:
            while (item := await pump.next_or_ping(ping_interval)) is not None:
                yield item if item is PING else encode_event(item)
        yield DONE
    except Exception as exc:  # noqa: BLE001 - an error mid-stream becomes an error event
        error = api_error_from(exc)
        yield encode_event(error_body(error.status, error.message, error.param, error.code))
    finally:
        if pump is not None:
            await pump.stop()
        await chunks.aclose()


def event_stream_response(chunks: AsyncStream[dict[str, Any]], ping_interval: float | None) -> StreamingResponse:
    return StreamingResponse(_events(chunks, ping_interval), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
