"""Hands a step's outputs to the event loops waiting for them: one thread-safe call per loop, with
the outputs already grouped by sink (the decode thread groups them while the event loop, whose
per-token work competes with the next decode for the cores, only hands them over)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from allama.engine.loop_handle import LoopHandle
from allama.engine.output_sink import OutputSink
from allama.engine.request import Output


class OutputPost:
    """Collects outputs on the decode thread and posts them, grouped by event loop."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        # per loop: its handle, and per sink (by id) its [sink, outputs, final]
        self._pending: dict[object, tuple[LoopHandle, dict[int, list[Any]]]] = {}

    def add(self, sink: OutputSink, loop: LoopHandle, *outs: Output) -> None:
        """Queues outputs (in order); nothing is delivered before flush()."""
        pending = self._pending.get(loop.key)
        if pending is None:
            pending = self._pending[loop.key] = (loop, {})
        entry = pending[1].get(id(sink))
        if entry is None:
            entry = pending[1][id(sink)] = [sink, [], False]
        entry[1].extend(outs)
        last = outs[-1]
        if last.finish_reason is not None or last.error is not None:
            entry[2] = True

    def add_token(self, sink: OutputSink, loop: LoopHandle, out: Output) -> None:
        """add() of one generated token's output (never a sequence's last): the decode thread's
        per-token path, without add()'s argument tuple and end checks."""
        pending = self._pending.get(loop.key)
        if pending is None:
            pending = self._pending[loop.key] = (loop, {})
        entry = pending[1].get(id(sink))
        if entry is None:
            pending[1][id(sink)] = [sink, [out], False]
        else:
            entry[1].append(out)

    def flush(self) -> list[OutputSink]:
        """Posts what was queued; returns the sinks whose event loop is closed (nobody listens)."""
        if not self._pending:
            return []
        pending, self._pending = self._pending, {}
        orphans: list[OutputSink] = []
        for loop, by_sink in pending.values():
            try:
                loop.post(deliver, by_sink.values())
            except RuntimeError:  # the loop is closed
                orphans.extend(sink for sink, _, _ in by_sink.values())
        return orphans


def deliver(entries: Iterable[list[Any]]) -> None:
    """Runs on the event loop: hands each sink its outputs in one push."""
    for sink, outs, final in entries:
        sink.push(outs, final)
