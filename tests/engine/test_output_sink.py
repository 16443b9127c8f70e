"""OutputSink: the event-loop side of a request, woken by pushes from the decode thread."""

from __future__ import annotations

import asyncio

import pytest

from allama.engine.loop_handle import running_loop_waiter
from allama.engine.output_sink import OutputSink


def test_get_waits_for_a_push_and_returns_outputs_in_order():
    async def main() -> list[int]:
        sink = OutputSink()
        waiter = asyncio.ensure_future(sink.get())
        await asyncio.sleep(0)
        assert not waiter.done()
        asyncio.get_running_loop().call_soon(sink.push, [1, 2])
        first = await waiter
        return [first, await sink.get()]

    assert asyncio.run(main()) == [1, 2]


def test_a_cancelled_get_leaves_the_sink_usable():
    async def main() -> int:
        sink = OutputSink()
        waiter = asyncio.ensure_future(sink.get())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        sink.push([7])  # sets the cancelled waiter's event: no InvalidStateError
        return await sink.get()

    assert asyncio.run(main()) == 7


def test_a_lazy_sink_wakes_its_waiter_only_on_the_final_push():
    async def main() -> tuple[int, int]:
        sink = OutputSink(eager=False)
        waiter = asyncio.ensure_future(sink.get())
        await asyncio.sleep(0)
        for token in range(5):
            sink.push([token])
        await asyncio.sleep(0)
        woken_early = sink.wakeups
        sink.push([5], final=True)
        await waiter
        return woken_early, sink.wakeups

    assert asyncio.run(main()) == (0, 1)


def test_the_asyncio_waiter_is_a_bare_future_and_waking_it_twice_is_harmless():
    async def main() -> None:
        sink = OutputSink()
        waiter = running_loop_waiter()
        assert type(waiter) is asyncio.Future
        getting = asyncio.ensure_future(sink.get())
        await asyncio.sleep(0)
        sink.push([1])
        sink.push([2])  # the waiter is woken once: the second push finds none
        assert await getting == 1
        assert sink.wakeups == 1

    asyncio.run(main())


def test_under_trio_get_waits_on_a_trio_event():
    trio = pytest.importorskip("trio")

    async def main() -> list[int]:
        sink = OutputSink()
        got: list[int] = []

        async def consume() -> None:
            got.append(await sink.get())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.sleep(0.01)
            assert not got
            sink.push([3])
        return got

    assert trio.run(main) == [3]

