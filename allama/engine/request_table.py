"""The requests on the decode thread, from admission to their end: the waiting queue (higher
priority first, then arrival), the running sequences, and how each ends (finished,
cancelled, timed out, parked or failed for want of KV cells, its event loop gone).

A finished sequence's KV goes to its session, to the prefix cache's kept sequences, or is
freed; its last output (held-back text, finish reason or error, usage) goes out through
`OutputPost` with the rest of the step's outputs at the next `flush()`.
"""

from __future__ import annotations

import heapq
import logging
import time

from allama import _native
from allama.engine.config import EngineConfig
from allama.engine.inbox import Inbox
from allama.engine.media_positions import position
from allama.engine.output_post import OutputPost
from allama.engine.output_processor import OutputProcessor
from allama.engine.output_sink import OutputSink
from allama.engine.prefix_cache import PrefixCache
from allama.engine.request import Output
from allama.engine.sequence import FOLLOWING, PREFILLING, Sequence, Submission
from allama.engine.session_slot import SessionSlot
from allama.engine.sessions import SessionTable
from allama.errors import AllamaError, EngineClosedError, KVCacheFullError, RequestTimeoutError
from allama.state import LlamaState

log = logging.getLogger("allama.engine")

# A caller that awaits the whole result gets a sequence's outputs with its last one, which
# spares its event loop a wake-up per step; or this many at a time, so that a closed event
# loop is still noticed (and the sequence ended) while it runs.
HELD_OUTPUTS = 64


class RequestTable:
    """Which requests wait and which sequences run; admits, parks and ends them."""

    def __init__(self, ctx: _native.Context, config: EngineConfig, inbox: Inbox, prefix_cache: PrefixCache,
                 sessions: SessionTable, outputs: OutputProcessor, counters: dict[str, int]) -> None:
        self.ctx = ctx
        self.config = config
        self.inbox = inbox
        self.prefix_cache = prefix_cache
        self.sessions = sessions
        self.outputs = outputs
        self.counters = counters              # the engine's counters (EngineStats), shared with the scheduler
        self.waiting: list[Submission] = []   # heap by priority, then arrival
        self.submissions: dict[int, Submission] = {}  # request id -> its submission, until it ends
        self.active: list[Sequence] = []
        self.timed: list[Submission] = []     # submissions with a timeout
        self.admission_paused = False         # a sequence is parked: it goes before new requests
        self._cache_warned = False            # said once that the KV cache, not the slots, limits
        self._post = OutputPost()
        self._orphans: list[OutputSink] = []  # sinks of closed event loops, for the next flush

    def has_work(self) -> bool:
        """A sequence runs, or a waiting request may be admitted."""
        return bool(self.active or (self.waiting and not self.admission_paused))

    def add(self, submission: Submission) -> None:
        """A request taken from the inbox waits for admission."""
        heapq.heappush(self.waiting, submission)
        self.submissions[submission.request.id] = submission
        if submission.request.timeout is not None:
            self.timed.append(submission)

    # --- admission ---------------------------------------------------------

    def admit(self) -> None:
        deferred: list[Submission] = []  # turns of a session whose previous turn still runs
        while self.waiting and not self.admission_paused:
            submission = self.waiting[0]
            slot = submission.request.session
            if slot is not None and (slot.busy or slot.closed):
                heapq.heappop(self.waiting)
                if slot.busy:
                    deferred.append(submission)
                    continue
                self.unqueue(submission, EngineClosedError("the session was closed"))
                continue
            n = submission.request.n
            if len(self.active) + n > self.config.n_parallel:
                break
            if (self.config.kv_unified and self.active
                    and self.cells_in_use() + len(submission.request.prompt) >= self.ctx.n_ctx):
                self._warn_cache_short(submission.request.id, "waits for KV cells with sequence slots free")
                break  # its prompt would not fit beside the running sequences: wait for one to end
            if slot is None and self.prefix_cache.spare_ids < n:
                break  # every spare id is a session's: wait for a running request to finish
            heapq.heappop(self.waiting)
            self.inbox.admitting(n)
            try:
                self._start(submission)
            finally:  # counted active before it stops counting as queued: stats never show it neither
                self.inbox.admitted()
        for submission in deferred:
            heapq.heappush(self.waiting, submission)

    def _warn_cache_short(self, request_id: int, what: str) -> None:
        """Says once that the unified KV cache (kv_size, by default n_ctx cells, as
        llama-cpp-python takes) rather than n_parallel limits how many requests run at once."""
        if self._cache_warned or not self.config.kv_unified:  # a stream per sequence: n_ctx cells each
            return
        self._cache_warned = True
        config = self.config
        log.warning("request %d %s: the unified KV cache's %d cells are shared by all running requests; "
                    "kv_size=%d (n_ctx=%d x n_parallel=%d) lets every slot run at once (docs/engine.md)",
                    request_id, what, self.ctx.n_ctx, config.n_ctx * config.n_parallel, config.n_ctx,
                    config.n_parallel)

    def _start(self, submission: Submission) -> None:
        request = submission.request
        self.counters["prompt_tokens"] += len(request.prompt)
        if request.session is not None:
            request.session.busy = True
        leader = self.prefix_cache.start(submission, self.active, self.sessions.slots.values())
        submission.sequences.append(leader)
        self.active.append(leader)
        for index in range(1, request.n):  # the other choices copy the leader's prompt KV
            follower = Sequence(request, index, submission.sink, submission.loop, self.prefix_cache.take_id())
            follower.share_row = True
            self.prefix_cache.follow(follower, leader, len(request.prompt))
            submission.sequences.append(follower)
            self.active.append(follower)

    def unqueue(self, submission: Submission, error: BaseException) -> None:
        """Ends a request that waits for admission (already out of the waiting heap)."""
        self.inbox.admitted()
        del self.submissions[submission.request.id]
        self.emit(submission, Output(0, [], "", error=error))

    def cells_in_use(self) -> int:
        """An upper bound on the KV cells the active sequences will hold once their prompts are
        in (prefixes shared through seq_cp are counted twice; kept sequences not at all: they
        are dropped when room is needed)."""
        used = 0
        for seq in self.active:
            if not seq.parked:
                used += len(seq.tokens) - (seq.target if seq.phase == FOLLOWING else 0)
        return used

    def make_room(self) -> None:
        """The KV cache is full: drop kept sequences first, else park the newest sequence (its
        KV removed; it is recomputed from its tokens once another sequence ends). The oldest
        sequence is never parked, so it always progresses; alone, it fails only when it needs
        more than the whole cache."""
        if self.prefix_cache.drop_oldest():
            return
        candidates = [s for s in self.active if s.phase != FOLLOWING and not s.parked]
        if len(candidates) <= 1:
            victim = candidates[0] if candidates else self.active[-1]
            self.finish(victim, error=KVCacheFullError(
                f"the KV cache ({self.ctx.n_ctx} cells, kv_size) cannot hold this request"))
            self.flush()
            return
        victim = max(candidates, key=lambda s: (-s.request.priority, s.request.submitted_at, s.index))
        if victim.followers:
            self.prefix_cache.release_followers(victim)
        self.ctx.seq_rm(victim.seq_id)
        victim.n_past = 0
        victim.phase = PREFILLING
        victim.parked = True
        self.admission_paused = True
        self.counters["preemptions"] += 1
        log.info("KV cache full: request %d is parked and will be recomputed", victim.request.id)
        self._warn_cache_short(victim.request.id, "was parked for want of KV cells")

    # --- outputs and ends --------------------------------------------------

    def emit(self, to: Sequence | Submission, out: Output) -> None:
        """Queues an output for the request's event loop (after the sequence's held ones);
        flush() delivers a step's outputs."""
        if isinstance(to, Sequence) and to.held:
            held, to.held = to.held, []
            self._post.add(to.sink, to.loop, *held, out)
        else:
            self._post.add(to.sink, to.loop, out)

    def emit_token(self, seq: Sequence, out: Output) -> None:
        """A generated token's output: to a stream's reader this step; held on the sequence for
        a caller that awaits the whole result (see HELD_OUTPUTS)."""
        if seq.sink.eager:
            self._post.add_token(seq.sink, seq.loop, out)
            return
        seq.held.append(out)
        if len(seq.held) >= HELD_OUTPUTS:
            held, seq.held = seq.held, []
            self._post.add(seq.sink, seq.loop, *held)

    def flush(self, *, finish_orphans: bool = True) -> None:
        """Posts the queued outputs. Sequences whose event loop is closed (nobody is listening
        any more) end here, or with the next flush when `finish_orphans` is false (a decode
        is running, and ending a sequence changes the KV cache)."""
        self._orphans.extend(self._post.flush())
        if not finish_orphans or not self._orphans:
            return
        orphans, self._orphans = self._orphans, []
        for sink in orphans:
            for seq in [s for s in self.active if s.sink is sink]:
                self.finish(seq, error=EngineClosedError("the event loop closed"), notify=False)

    def finish(self, seq: Sequence, *, finish_reason: str | None = None, error: BaseException | None = None,
               last: Output | None = None, notify: bool = True) -> None:
        if seq not in self.active:
            return
        self.active.remove(seq)
        seq.ended = True
        if seq.drafted:  # it ended inside confirmed draft tokens: KV beyond n_past is not its
            self.ctx.seq_rm(seq.seq_id, position(seq.shifts, seq.n_past), -1)
            seq.drafted = False
        if seq.leader is not None:
            seq.leader.followers.remove(seq)
            seq.leader = None
        if seq.followers:
            self.prefix_cache.release_followers(seq)
        request = seq.request
        state = None
        if error is None and notify and request.keep_state and seq.index == 0 and seq.n_past > 0:
            state = self.capture(seq)
        if request.session is not None:
            self.sessions.settle(request.session, seq, error)
        elif error is None and self.config.n_keep > 0 and seq.n_past > 0:
            self.prefix_cache.keep(seq.seq_id, seq.tokens[:seq.n_past], request.lora)
        else:
            self.prefix_cache.free(seq.seq_id)
        if error is None and request.session is None:  # what save_state() gives (if kept)
            self.sessions.last_finished = (seq.seq_id, self.prefix_cache.kept.get(seq.seq_id, []))
        if self.admission_paused:  # cells were freed: the parked sequences go first
            self.admission_paused = False
            for other in self.active:
                other.parked = False
        submission = self.submissions.get(request.id)
        if submission is None:
            return
        submission.finished += 1
        if submission.finished == len(submission.sequences):
            del self.submissions[request.id]
            self.counters["requests_finished"] += 1
        if notify:
            self.emit(seq, self.outputs.final(seq, submission, last, finish_reason, error, state))

    def capture(self, seq: Sequence) -> LlamaState | None:
        """The finished sequence's state for the prompt cache (None, with a warning, if llama.cpp
        cannot give it). The seed is the caller's to fill in."""
        try:
            data = self.ctx.seq_state_get(seq.seq_id)
        except Exception as exc:  # noqa: BLE001 - the completion itself succeeded
            log.warning("could not save a sequence state for the prompt cache: %s", exc)
            return None
        return LlamaState.of_sequence(seq.tokens[:seq.n_past], data, 0)

    def cancel(self, wanted: set[int]) -> None:
        """Ends the requests with these ids: waiting ones leave the queue, running sequences end
        without a last output (nobody waits for it)."""
        still_waiting = [s for s in self.waiting if s.request.id not in wanted]
        if len(still_waiting) != len(self.waiting):
            removed = len(self.waiting) - len(still_waiting)
            self.waiting = still_waiting
            heapq.heapify(self.waiting)
            self.inbox.admitted(removed)
            self.counters["requests_cancelled"] += removed
        for seq in [s for s in self.active if s.request.id in wanted]:
            submission = self.submissions.get(seq.request.id)
            self.finish(seq, error=AllamaError("cancelled"), notify=False)
            if submission is not None and seq.index == 0:
                self.counters["requests_cancelled"] += 1
        for request_id in wanted:
            self.submissions.pop(request_id, None)

    def expire_deadlines(self) -> None:
        if not self.timed:
            return
        now = time.monotonic()
        self.timed = [s for s in self.timed if s.request.id in self.submissions]
        for submission in list(self.timed):
            timeout = submission.request.timeout
            if now - submission.request.submitted_at < timeout:
                continue
            error = RequestTimeoutError(f"the request did not finish within its timeout of {timeout} s")
            if submission in self.waiting:
                self.waiting.remove(submission)
                heapq.heapify(self.waiting)
                self.unqueue(submission, error)
            for seq in [s for s in self.active if s.request is submission.request]:
                self.finish(seq, error=error)
        self.flush()

    def close_session(self, slot: SessionSlot) -> None:
        """Ends the session's running turn, if any, and frees its sequence."""
        for seq in [s for s in self.active if s.request.session is slot]:
            self.finish(seq, error=EngineClosedError("the session was closed"))
        self.sessions.close(slot)

    def fail_all(self, error: BaseException, late: list[Submission]) -> None:
        """At shutdown: every running sequence, waiting request and `late` one (posted but never
        taken) ends with `error`."""
        for seq in list(self.active):
            self.finish(seq, error=error)
        for submission in [*self.waiting, *late]:
            self.emit(submission, Output(0, [], "", error=error))
        self.waiting = []
