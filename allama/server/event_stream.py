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


def _event(payload: Any) -> bytes:
    try:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
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
            yield _event(chunk)
    except Exception as exc:  # noqa: BLE001 - an error mid-stream becomes an error event
        error = api_error_from(exc)
        yield _event(error_body(error.status, error.message, error.param, error.code))
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
