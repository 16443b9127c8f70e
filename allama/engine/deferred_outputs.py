"""Sampled tokens whose outputs are made while the next step decodes (`overlap_outputs`).

A token that only its text could end (see `OutputProcessor.can_defer`) goes into the next
step's batch at once; its text, stop-string check and posting run on the `OutputThread`
while that batch decodes with the GIL released. A sequence whose text turns out to hold a
stop string (or whose custom tokenizer raised) ends once the decode has returned: ending it
changes the KV cache, which only the decode thread touches between decodes. The token it
decoded for nothing is then dropped from its KV, as refused draft tokens are.
"""

from __future__ import annotations

from collections.abc import Callable

from allama.engine.output_processor import OutputProcessor
from allama.engine.output_thread import OutputThread
from allama.engine.request import Output
from allama.engine.request_table import RequestTable
from allama.engine.sequence import Sequence

# Fewest sampled rows for which a step defers outputs. The hand-over wakes the output thread,
# which costs the decode thread tens of µs on a VM (an idle vCPU is woken by an interrupt):
# about what making one or two tokens' outputs costs. A step that samples fewer makes its
# outputs at once (docs/benchmarks.md, twelfth session).
MIN_ROWS = 4


class DeferredOutputs:
    """The decode thread's deferred tokens; with `enabled` false nothing is ever deferred."""

    def __init__(self, outputs: OutputProcessor, requests: RequestTable, *, enabled: bool) -> None:
        self.outputs = outputs
        self.requests = requests
        self.enabled = enabled
        self._pending: list[tuple[Sequence, int]] = []  # sampled last step, outputs not made yet
        self._ended: list[tuple[Sequence, Output | None, BaseException | None]] = []  # to end after the decode
        self._thread: OutputThread | None = None  # started at the first hand-over

    def worth_it(self, n_rows: int) -> bool:
        """Whether a step that sampled `n_rows` rows defers what it can (see MIN_ROWS)."""
        return self.enabled and n_rows >= MIN_ROWS

    def defer(self, seq: Sequence, token: int) -> bool:
        """Appends a sampled token whose output can wait for the next decode; False (nothing
        done) when it cannot, and the caller accepts it now."""
        if not self.outputs.can_defer(seq, token):  # the caller asked worth_it() first
            return False
        self.outputs.append(seq, token)
        self._pending.append((seq, token))
        return True

    def post_during(self, decode: Callable[[], None]) -> None:
        """Runs `decode` while the output thread makes and posts the pending tokens' outputs;
        returns (or raises what `decode` raised) once both have ended."""
        pending, self._pending = self._pending, []
        if not pending:
            decode()
            return
        if self._thread is None:
            self._thread = OutputThread()
        self._thread.start(lambda: self._post(pending))
        try:
            decode()
        finally:
            self._thread.wait()

    def post_now(self) -> None:
        """The pending tokens' outputs, with no decode to wait for; ends what they end."""
        pending, self._pending = self._pending, []
        self._make_outputs(pending)
        self.end_stopped()

    def end_stopped(self) -> set[Sequence]:
        """Ends the sequences that the outputs made during the decode ended (the decode has
        returned); returns them."""
        stopped = set()
        ended, self._ended = self._ended, []
        for seq, out, error in ended:
            if seq.ended:
                continue
            seq.drafted = True  # KV beyond n_past (the token decoded for nothing) is not its
            if error is None:
                self.requests.finish(seq, finish_reason="stop", last=out)
            else:
                self.requests.finish(seq, error=error)
            stopped.add(seq)
        return stopped

    def close(self) -> None:
        if self._thread is not None:
            self._thread.stop()

    def _post(self, pending: list[tuple[Sequence, int]]) -> None:
        """On the output thread, while the decode runs."""
        self._make_outputs(pending)
        self.requests.flush(finish_orphans=False)

    def _make_outputs(self, pending: list[tuple[Sequence, int]]) -> None:
        """Queues the tokens' outputs; notes the sequences they end. Touches no KV."""
        for seq, token in pending:
            if seq.ended:  # cancelled, timed out or failed since its token was sampled
                continue
            try:
                out, finish = self.outputs.deferred_output(seq, token)
            except Exception as exc:  # noqa: BLE001 - a custom tokenizer failed: end that request
                self._ended.append((seq, None, exc))
                continue
            if finish is None:
                self.requests.emit_token(seq, out)
            else:
                self._ended.append((seq, out, None))
