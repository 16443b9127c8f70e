"""Server-Sent Events as OpenAI sends them: `data: {json}` and a blank line per chunk,
`data: [DONE]` at the end, and `: ping` comments while a chunk is slow to come."""

from __future__ import annotations

import asyncio
import json
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


async def _events(chunks: AsyncStream[dict[str, Any]], ping_interval: float | None) -> AsyncIterator[bytes]:
    """Each chunk as an event. Leaving early (the client disconnected: the server cancels
    this generator) closes `chunks`, which cancels the request in the engine at once."""
    pending: asyncio.Task[dict[str, Any]] | None = None
    try:
        while True:
            pending = asyncio.ensure_future(chunks.__anext__())
            while not pending.done():
                done, _ = await asyncio.wait({pending}, timeout=ping_interval)
                if not done:
                    yield PING
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                yield DONE
                return
            finally:
                pending = None
            yield encode_event(chunk)
    except Exception as exc:  # noqa: BLE001 - an error mid-stream becomes an error event
        error = api_error_from(exc)
        yield encode_event(error_body(error.status, error.message, error.param, error.code))
    finally:
        if pending is not None:
            pending.cancel()
            try:
                await pending
            except BaseException:  # noqa: BLE001 - only its cancellation is expected here
                pass
        await chunks.aclose()


def event_stream_response(chunks: AsyncStream[dict[str, Any]], ping_interval: float | None) -> StreamingResponse:
    return StreamingResponse(_events(chunks, ping_interval), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
