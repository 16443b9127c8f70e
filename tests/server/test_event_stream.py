"""Server-sent events: one event per chunk, whatever characters the model's text holds; pings
while a chunk is slow to come; an error event mid-stream; the chunks closed when the client leaves."""

from __future__ import annotations

import asyncio
import json

import pytest
from httpx._decoders import LineDecoder

from allama.server.event_stream import DONE, PING, _events, encode_event
from allama.stream import AsyncStream


def test_line_separators_in_text_stay_inside_their_event():
    text = "a\u2028b\x85c\u2029d\r\ne"
    event = encode_event({"choices": [{"text": text}]})
    lines = LineDecoder().decode(event.decode())  # httpx's iter_lines: str.splitlines' line ends
    assert lines[0].startswith("data: ") and lines[1:] == [""]
    assert json.loads(lines[0][len("data: "):])["choices"][0]["text"] == text


def test_other_text_is_sent_as_utf8_and_a_lone_surrogate_escaped():
    assert encode_event({"t": "é€"}) == 'data: {"t":"é€"}\n\n'.encode()
    assert encode_event({"t": "\ud800"}) == b'data: {"t":"\\ud800"}\n\n'


def chunk_source(delays: list[float], log: list[str], fail: bool = False) -> AsyncStream:
    async def chunks():
        try:
            for i, delay in enumerate(delays):
                await asyncio.sleep(delay)
                yield {"i": i}
            if fail:
                raise ValueError("the model failed")
        finally:
            log.append("closed")
    return AsyncStream(chunks())


async def collect(events) -> list[bytes]:
    return [event async for event in events]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("ping_interval", [None, 5.0])
async def test_each_chunk_is_an_event_then_done(ping_interval):
    log: list[str] = []
    events = await collect(_events(chunk_source([0, 0, 0], log), ping_interval))
    assert events == [encode_event({"i": i}) for i in range(3)] + [DONE] and log == ["closed"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_slow_chunk_is_preceded_by_pings():
    log: list[str] = []
    events = await collect(_events(chunk_source([0, 0.2], log), 0.03))
    assert events[0] == encode_event({"i": 0}) and events[-2:] == [encode_event({"i": 1}), DONE]
    assert 2 <= events.count(PING) <= 8 and set(events[1:-2]) == {PING}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("ping_interval", [None, 5.0])
async def test_an_error_mid_stream_is_the_last_event(ping_interval):
    log: list[str] = []
    events = await collect(_events(chunk_source([0], log, fail=True), ping_interval))
    assert events[0] == encode_event({"i": 0}) and len(events) == 2
    assert json.loads(events[1][len(b"data: "):])["error"]["message"] and log == ["closed"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_client_that_leaves_closes_the_chunks_and_leaves_no_task():
    log: list[str] = []
    before = asyncio.all_tasks()
    events = _events(chunk_source([0, 30.0], log), 5.0)
    assert await events.__anext__() == encode_event({"i": 0})
    reader = asyncio.ensure_future(events.__anext__())  # waits for the slow chunk
    await asyncio.sleep(0.01)
    reader.cancel()  # as the server does when the client disconnects
    with pytest.raises(asyncio.CancelledError):
        await reader
    await events.aclose()
    assert log == ["closed"]
    assert asyncio.all_tasks() - before == set()  # the task reading the chunks is gone
