"""Hands a step's outputs to the event loops waiting for them: one thread-safe call per loop."""

from __future__ import annotations

from allama.engine.loop_handle import LoopHandle
from allama.engine.output_sink import OutputSink
from allama.engine.request import Output


class OutputPost:
    """Collects outputs on the decode thread and posts them, grouped by event loop."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[object, tuple[LoopHandle, list[tuple[OutputSink, Output]]]] = {}

    def add(self, sink: OutputSink, loop: LoopHandle, out: Output) -> None:
        """Queues an output; nothing is delivered before flush()."""
        pending = self._pending.get(loop.key)
        if pending is None:
            pending = self._pending[loop.key] = (loop, [])
        pending[1].append((sink, out))

    def flush(self) -> list[OutputSink]:
        """Posts what was queued; returns the sinks whose event loop is closed (nobody listens)."""
        if not self._pending:
            return []
        pending, self._pending = self._pending, {}
        orphans: list[OutputSink] = []
        for loop, items in pending.values():
            try:
                loop.post(deliver, items)
            except RuntimeError:  # the loop is closed
                orphans.extend(sink for sink, _ in items)
        return orphans


def deliver(items: list[tuple[OutputSink, Output]]) -> None:
    """Runs on the event loop: hands each sink its outputs in one push."""
    by_sink: dict[int, tuple[OutputSink, list[Output]]] = {}
    for sink, out in items:
        entry = by_sink.get(id(sink))
        if entry is None:
            entry = by_sink[id(sink)] = (sink, [])
        entry[1].append(out)
    for sink, outs in by_sink.values():
        sink.push(outs, any(o.finish_reason is not None or o.error is not None for o in outs))
