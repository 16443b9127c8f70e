"""The scheduler: one decode thread per model runs every request's sequences.

Each step builds one batch from one token of every generating sequence plus
prompt chunks of sequences in prefill (up to n_batch tokens), decodes it with
the GIL released, samples every sequence in one native call, and hands the
outputs to each waiting event loop with one thread-safe call per loop.

Only the decode thread touches the context. The event loop talks to it through
`submit`, `cancel` and `close`, which only append to a locked inbox, and through
the session calls (`open_session`, `save_session`, ...), which queue a function
for the decode thread to run between steps.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np

from allama import _native
from allama.engine.embedding import EmbeddingRunner, EmbedRequest
from allama.engine.engine_call import EngineCall
from allama.engine.loop_handle import LoopHandle
from allama.engine.media_positions import before_media, check_media, next_media_start, position, position_shifts
from allama.engine.output_sink import OutputSink
from allama.engine import process_hooks
from allama.engine.process_hooks import block_interrupts
from allama.engine.request import Output, Request, TokenLogprob
from allama.engine.session_slot import SessionSlot
from allama.engine.speculation import DRAFT_CAP_START, next_cap, proposal
from allama.engine.stats import EngineStats
from allama.engine.text_stream import TextStream
from allama.errors import (
    AllamaError,
    DecodeAbortedError,
    DecodeError,
    EngineClosedError,
    KVCacheFullError,
    QueueFullError,
    RequestTimeoutError,
)
from allama.state import LlamaState
from allama.token_prefix import common_prefix

log = logging.getLogger("allama.engine")

# Sequence states on the decode thread.
_FOLLOW = 0    # waits for a leader sequence to evaluate a shared prefix
_PREFILL = 1
_GENERATE = 2

# Tokens before a new one that a custom tokenizer is given to detokenize it: enough for a
# leading space and for a character split over several tokens, and O(1) per token.
_DETOKENIZE_CONTEXT = 64


@dataclass(frozen=True)
class EngineConfig:
    n_ctx: int          # the window one request may use
    n_parallel: int     # sequences decoded at once
    n_batch: int        # tokens per decode step
    n_keep: int         # extra sequence ids that keep finished KV for prefix reuse
    max_queue: int      # requests waiting for a slot before QueueFullError
    min_shared_prefix: int = 16  # tokens worth waiting for another request's prefill
    pooling_type: int = -1       # embeddings: -1 the model's, 0 none, 1 mean, 2 cls, 3 last, 4 rank
    embed_max_tokens: int = 512  # tokens in one embedding batch (an input longer than this is truncated)
    embed_max_seqs: int = 4      # inputs in one embedding batch (fastest on CPU; docs/benchmarks.md)
    kv_unified: bool = True      # False: a KV stream of n_ctx cells per sequence id (docs/engine.md)


class _Choice:
    """One sequence of a request, as the decode thread tracks it."""

    __slots__ = ("request", "index", "sink", "loop", "seq_id", "tokens", "n_prompt", "n_past", "state",
                 "chain", "text", "generated", "leader", "target", "share_row", "followers", "logprobs",
                 "prompt_logprobs", "reused", "shifts", "drafted", "draft_cap", "suspect", "parked")

    def __init__(self, request: Request, index: int, sink: OutputSink, loop: LoopHandle, seq_id: int) -> None:
        self.request = request
        self.index = index
        self.sink = sink
        self.loop = loop
        self.seq_id = seq_id
        self.tokens: list[int] = list(request.prompt)
        self.n_prompt = len(request.prompt)
        self.n_past = 0
        self.state = _PREFILL
        self.chain = request.chains[index]
        self.text = TextStream(request.stop)
        self.generated = 0
        self.leader: _Choice | None = None
        self.target = 0
        self.share_row = False
        self.followers: list[_Choice] = []
        self.logprobs: list[TokenLogprob] | None = None
        self.prompt_logprobs: list[TokenLogprob | None] | None = None
        self.reused = 0
        self.shifts = position_shifts(request) if request.media else None
        self.drafted = False  # KV holds draft tokens beyond n_past (while a speculation is verified)
        self.draft_cap = DRAFT_CAP_START  # most proposed tokens to decode next step (adapts to acceptance)
        self.suspect = False  # in a batch that llama.cpp failed: decoded alone until it passes
        self.parked = False   # preempted for want of KV cells: recomputed once another sequence ends


class _Entry:
    """A submitted request with where its outputs go."""

    __slots__ = ("request", "sink", "loop", "choices", "finished", "order")

    def __init__(self, request: Request, sink: OutputSink, loop: LoopHandle, order: int) -> None:
        self.request = request
        self.sink = sink
        self.loop = loop
        self.choices: list[_Choice] = []
        self.finished = 0
        self.order = order

    def __lt__(self, other: "_Entry") -> bool:
        return (-self.request.priority, self.order) < (-other.request.priority, other.order)


class Scheduler:
    """Continuous batching over one native context; see the module docstring."""

    def __init__(self, model: _native.Model, context_params: _native.ContextParams, config: EngineConfig,
                 tokenizer: Any = None, draft_model: Any = None) -> None:
        if config.n_parallel < 1:
            raise ValueError("n_parallel must be at least 1")
        n_ids = config.n_parallel + config.n_keep
        if n_ids > _native.max_parallel_sequences():
            raise ValueError(f"n_parallel + kept sequences must be at most {_native.max_parallel_sequences()}")
        context_params.n_seq_max = n_ids
        context_params.kv_unified = config.kv_unified
        if not config.kv_unified:
            # each sequence id gets a stream of its own, big enough for one request's window
            context_params.n_ctx = config.n_ctx * n_ids
        self.config = config
        self.model = model
        # A recurrent (or hybrid) memory holds one state per sequence, after its last token: it
        # cannot be cut back to a shorter prefix, and seq_cp copies the whole state.
        self._recurrent = model.is_recurrent or model.is_hybrid
        # Sliding-window layers let llama.cpp reuse the cells of positions that left a sequence's
        # window: a prefix of it is usable only while the window before its end is still held.
        self._n_swa = model.n_swa
        self.vocab = _native.Vocab(model)
        self.tokenizer = tokenizer  # a BaseLlamaTokenizer that turns tokens into text; None: the vocabulary
        self.draft_model = draft_model  # a LlamaDraftModel proposing tokens for speculative decoding
        if draft_model is not None and self._recurrent:
            # refused draft tokens could not be dropped from the state again
            log.warning("speculative decoding is off: this model's recurrent memory cannot drop refused draft tokens")
            self.draft_model = None
        self.ctx = _native.Context(model, context_params)
        self._n_batch = min(config.n_batch, self.ctx.n_batch)
        self._batch = _native.Batch(self._n_batch, 1)

        self._lock = threading.Condition()
        self._inbox: list[_Entry] = []
        self._cancels: list[int] = []
        self._calls: list[EngineCall] = []
        self._closing = False
        self._forked = False
        self._isolating = False              # some choices are suspects of a failed decode
        self._queued = 0                     # requests in the inbox or waiting
        self._order = 0

        # decode-thread state
        self._waiting: list[_Entry] = []     # heap by priority, then arrival
        self._entries: dict[int, _Entry] = {}
        self._active: list[_Choice] = []
        self._free_ids = list(range(n_ids))  # a heap: the smallest free id is taken first
        self._kept: OrderedDict[int, list[int]] = OrderedDict()
        self._kept_lora: dict[int, tuple] = {}  # the LoRA adapters a kept sequence's KV was computed with
        self._lora_applied: tuple = ()           # the adapters the context decodes with now
        self._lora_turn = 0                      # round robin between requests' adapter sets
        self._sessions: dict[int, SessionSlot] = {}  # seq id -> the session that owns it
        self._admission_paused = False
        self._last_finished: tuple[int, list[int]] | None = None  # the last kept completion: seq id, tokens
        self._timed: list[_Entry] = []       # entries with a timeout

        self._counters = dict(prompt_tokens=0, prompt_tokens_evaluated=0, prompt_tokens_reused=0,
                              tokens_generated=0, decode_calls=0, preemptions=0, requests_finished=0,
                              requests_cancelled=0, prompt_tokens_restored=0, draft_tokens=0, draft_tokens_accepted=0)
        self._seconds = dict(step=0.0, decode=0.0, sample=0.0)
        self._llama_tokens = 0
        self._multi_token_decodes = 0
        self._single_token_decodes = 0
        self._pending: dict[object, tuple[LoopHandle, list[tuple[OutputSink, Output]]]] = {}
        self._embed_inbox: list[tuple[EmbedRequest, OutputSink, LoopHandle]] = []
        self.embedder = EmbeddingRunner(model, config.pooling_type, config.embed_max_tokens, config.embed_max_seqs,
                                        context_params.n_threads, context_params.n_threads_batch)
        self._thread = threading.Thread(target=self._run, name="allama-decode", daemon=True)
        self._thread.start()
        process_hooks.track(self)

    def _check_not_forked(self) -> None:
        if self._forked:
            raise AllamaError("this model was loaded in the parent process before fork(); its decode thread "
                              "does not exist in this child. Load the model in the child, or use "
                              "multiprocessing's 'spawn' (or 'forkserver') start method")

    # ------------------------------------------------------------------ loop side

    def submit(self, request: Request, sink: OutputSink, loop: LoopHandle) -> None:
        """Queues a request; raises QueueFullError or EngineClosedError at once."""
        if request.n > self.config.n_parallel:
            raise ValueError(f"n={request.n} is more than n_parallel={self.config.n_parallel}")
        if request.session is not None and request.n != 1:
            raise ValueError("a session turn continues one sequence: n must be 1")
        if request.media:
            check_media(request)
        self._check_not_forked()
        with self._lock:
            if self._closing:
                raise EngineClosedError("the model is closed")
            if self._queued >= self.config.max_queue + max(0, self.config.n_parallel - len(self._active)):
                raise QueueFullError(f"the request queue is full ({self.config.max_queue} waiting)")
            self._order += 1
            self._inbox.append(_Entry(request, sink, loop, self._order))
            self._queued += 1
            self._lock.notify()

    def submit_embedding(self, request: EmbedRequest, sink: OutputSink, loop: LoopHandle) -> None:
        """Queues inputs to embed; their outputs arrive one per input, in completion order."""
        self._check_not_forked()
        with self._lock:
            if self._closing:
                raise EngineClosedError("the model is closed")
            self._embed_inbox.append((request, sink, loop))
            self._lock.notify()

    def cancel(self, request: Request | EmbedRequest) -> None:
        """Frees the request's sequences at the next step (safe from any thread)."""
        with self._lock:
            self._cancels.append(request.id)
            self._lock.notify()

    def stats(self) -> EngineStats:
        c = self._counters
        decode_calls = c["decode_calls"]
        return EngineStats(
            active=len(self._active), queued=self._queued, kept=len(self._kept),
            prompt_tokens=c["prompt_tokens"], prompt_tokens_evaluated=c["prompt_tokens_evaluated"],
            prompt_tokens_reused=c["prompt_tokens_reused"], tokens_generated=c["tokens_generated"],
            decode_calls=decode_calls, llama_tokens_evaluated=self._llama_tokens,
            mean_batch_size=self._llama_tokens / decode_calls if decode_calls else 0.0,
            preemptions=c["preemptions"], requests_finished=c["requests_finished"],
            requests_cancelled=c["requests_cancelled"], embedding_inputs=self.embedder.inputs_embedded,
            embedding_batches=self.embedder.batches, step_seconds=self._seconds["step"],
            decode_seconds=self._seconds["decode"], sample_seconds=self._seconds["sample"],
            sessions=len(self._sessions), prompt_tokens_restored=c["prompt_tokens_restored"],
            draft_tokens=c["draft_tokens"], draft_tokens_accepted=c["draft_tokens_accepted"])

    def close(self, timeout: float | None = None) -> None:
        """Fails pending and running requests with EngineClosedError and frees the context."""
        if self._forked:  # no decode thread here, and the lock may have been copied held
            self._closing = True
            return
        with self._lock:
            self._closing = True
            self._lock.notify()
        self.ctx.abort()  # a long prefill step stops at its next ubatch
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout)

    def stop_for_exit(self, timeout: float) -> None:
        """At interpreter exit: stop the decode thread before Python is torn down."""
        self.close(timeout)

    def mark_forked(self) -> None:
        """In a child made by fork(): the decode thread was not copied; refuse work."""
        self._forked = True

    @property
    def closed(self) -> bool:
        return self._closing

    def held_prefix(self, prompt: list[int]) -> int:
        """About how many leading prompt tokens the engine already holds KV for (kept, running or
        session sequences). A hint for the loop side: it reads the decode thread's state without
        locking, so it can be a step out of date."""
        limit = len(prompt) - 1
        try:
            held = [*self._kept.values(), *(s.tokens for s in list(self._sessions.values())),
                    *(c.tokens[:c.n_past] for c in list(self._active))]
        except RuntimeError:  # changed while being read
            return 0
        return max((self._reusable(common_prefix(prompt, tokens, limit), len(tokens)) for tokens in held), default=0)

    def _reusable(self, shared: int, held: int) -> int:
        """How many of the `shared` leading prompt tokens a sequence holding `held` tokens can give:
        all of them, except from a recurrent memory, which gives its whole state or nothing."""
        return shared if not self._recurrent or shared == held else 0

    def _window_held(self, seq_id: int, pos: int) -> bool:
        """Whether the sequence still holds every position that a token at `pos` attends to (always,
        without sliding windows; llama.cpp keeps a sequence's positions contiguous, so its
        smallest one tells)."""
        if self._n_swa <= 0 or pos <= 0:
            return True
        return 0 <= self.ctx.seq_pos_min(seq_id) <= max(0, pos - self._n_swa + 1)

    # --- sessions (awaited from the event loop, run on the decode thread) ----------

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Runs fn() on the decode thread between steps and returns its result (or raises its error)."""
        job = EngineCall(fn, LoopHandle.current())
        self._queue_call(job)
        return await job.wait()

    def _queue_call(self, job: EngineCall) -> None:
        self._check_not_forked()
        with self._lock:
            if self._closing:
                raise EngineClosedError("the model is closed")
            self._calls.append(job)
            self._lock.notify()

    async def open_session(self) -> SessionSlot:
        """A sequence of its own for a session, kept until close_session()."""
        return await self.call(self._open_session)

    async def close_session(self, slot: SessionSlot) -> None:
        """Ends the session's running turn, if any, and frees its sequence."""
        await self.call(lambda: self._close_session(slot))

    def close_session_soon(self, slot: SessionSlot) -> None:
        """close_session() without waiting (for a session dropped without aclose); never raises."""
        try:
            self._queue_call(EngineCall(lambda: self._close_session(slot), None))
        except EngineClosedError:
            pass

    async def save_session(self, slot: SessionSlot, seed: int) -> LlamaState:
        """The session's tokens and its sequence's KV bytes."""
        return await self.call(lambda: self._save_session(slot, seed))

    async def load_session(self, slot: SessionSlot, state: LlamaState) -> None:
        """Replaces the session's history with a saved state; ValueError if it does not fit."""
        await self.call(lambda: self._load_session(slot, state))

    @property
    def last_completion_tokens(self) -> list[int]:
        """The tokens of the most recently finished completion (prompt and output, but the
        last sampled token), whose KV its kept sequence holds; [] before any."""
        last = self._last_finished  # one read: the decode thread replaces the tuple whole
        return list(last[1]) if last is not None else []

    async def save_last_completion(self, seed: int) -> LlamaState | None:
        """The tokens and KV of the most recently finished completion, while its kept sequence
        still holds them (None if there was none since forget_last_completion(), or its KV
        was dropped or taken over by a later request)."""
        return await self.call(lambda: self._save_last_completion(seed))

    async def forget_last_completion(self) -> None:
        await self.call(lambda: setattr(self, "_last_finished", None))

    def _save_last_completion(self, seed: int) -> LlamaState | None:
        if self._last_finished is None:
            return None
        seq_id, tokens = self._last_finished
        if not tokens or self._kept.get(seq_id) is not tokens:
            raise AllamaError("the KV of the last completion is no longer held (dropped for room, or reused by "
                              "a later request); keep a conversation's state with llm.session() instead")
        return LlamaState.of_sequence(list(tokens), self.ctx.seq_state_get(seq_id), seed)

    def _open_session(self) -> SessionSlot:
        if len(self._sessions) >= self.config.n_keep:
            n = self.config.n_keep
            raise AllamaError(f"at most {n} sessions can be open at once (n_keep={n}): "
                              "close one, or load the model with a larger n_keep")
        slot = SessionSlot(self._take_seq_id())
        self._sessions[slot.seq_id] = slot
        return slot

    def _close_session(self, slot: SessionSlot) -> None:
        if slot.closed:
            return
        for choice in [c for c in self._active if c.request.session is slot]:
            self._finish(choice, error=EngineClosedError("the session was closed"))
        slot.closed = True  # its waiting turns fail at admission
        del self._sessions[slot.seq_id]
        self.ctx.seq_rm(slot.seq_id)
        heapq.heappush(self._free_ids, slot.seq_id)
        slot.tokens = []

    def _idle_session(self, slot: SessionSlot) -> None:
        if slot.closed:
            raise EngineClosedError("the session is closed")
        if slot.busy:
            raise AllamaError("the session is running a turn; wait for it to finish")

    def _save_session(self, slot: SessionSlot, seed: int) -> LlamaState:
        self._idle_session(slot)
        return LlamaState.of_sequence(list(slot.tokens), self.ctx.seq_state_get(slot.seq_id), seed)

    def _load_session(self, slot: SessionSlot, state: LlamaState) -> None:
        self._idle_session(slot)
        self.ctx.seq_rm(slot.seq_id)
        slot.tokens = []
        self._load_sequence(slot.seq_id, state)
        slot.tokens = state.tokens
        slot.lora = ()  # states are computed and restored without adapters

    def _settle_session(self, slot: SessionSlot, choice: _Choice, error: BaseException | None) -> None:
        """A turn ended: the session keeps the KV of the tokens evaluated so far, so what it records
        matches its sequence even after a cancellation midway; a failed decode clears it."""
        slot.busy = False
        if slot.closed:
            return
        if isinstance(error, DecodeError):
            self.ctx.seq_rm(slot.seq_id)
            slot.tokens = []
        else:
            self.ctx.seq_rm(slot.seq_id, position(choice.shifts, choice.n_past), -1)
            slot.tokens = choice.tokens[:choice.n_past]
            slot.lora = choice.request.lora

    # ------------------------------------------------------------------ decode thread

    def _run(self) -> None:
        block_interrupts()
        try:
            while True:
                with self._lock:
                    while not (self._inbox or self._cancels or self._calls or self._closing or self._active or
                               self._embed_inbox or self.embedder.has_work() or
                               (self._waiting and not self._admission_paused)):
                        self._lock.wait()
                    inbox, self._inbox = self._inbox, []
                    embeds, self._embed_inbox = self._embed_inbox, []
                    cancels, self._cancels = self._cancels, []
                    calls, self._calls = self._calls, []
                    closing = self._closing
                for entry in inbox:
                    heapq.heappush(self._waiting, entry)
                    self._entries[entry.request.id] = entry
                    if entry.request.timeout is not None:
                        self._timed.append(entry)
                for request, sink, loop in embeds:
                    self.embedder.add(request, sink, loop)
                if cancels:
                    self._apply_cancels(cancels)
                if closing:
                    for call in calls:
                        call.fail(EngineClosedError("the model was closed"))
                    self._shutdown()
                    return
                for call in calls:
                    call.run()
                if calls:
                    self._flush()
                self._expire_deadlines()
                self._admit()
                if self.embedder.has_work():
                    # one embedding batch between generation steps: generation slows by its compute only
                    try:
                        self.embedder.step(self._emit)
                    except Exception as exc:  # noqa: BLE001 - e.g. the embeddings context cannot be made
                        self.embedder.fail_all(self._emit, exc)
                    self._flush()
                if self._active:
                    try:
                        self._step()
                    except Exception as exc:  # noqa: BLE001 - a failed step fails its requests, not the engine
                        if self._closing and isinstance(exc, DecodeAbortedError):
                            continue  # close() stopped the step: the next turn fails them as closed
                        log.exception("decode step failed")
                        for choice in list(self._active):
                            self._finish(choice, error=exc)
                        self._flush()
        except BaseException:  # pragma: no cover - last resort
            log.exception("the decode thread died")
            raise

    # --- admission ---------------------------------------------------------

    def _take_seq_id(self) -> int:
        if not self._free_ids:
            seq_id, _ = self._kept.popitem(last=False)  # least recently used
            self.ctx.seq_rm(seq_id)
            return seq_id
        return heapq.heappop(self._free_ids)

    def _admit(self) -> None:
        deferred: list[_Entry] = []  # turns of a session whose previous turn still runs
        while self._waiting and not self._admission_paused:
            entry = self._waiting[0]
            slot = entry.request.session
            if slot is not None and (slot.busy or slot.closed):
                heapq.heappop(self._waiting)
                if slot.busy:
                    deferred.append(entry)
                    continue
                with self._lock:
                    self._queued -= 1
                del self._entries[entry.request.id]
                self._emit(entry, Output(0, [], "", error=EngineClosedError("the session was closed")))
                continue
            n = entry.request.n
            if len(self._active) + n > self.config.n_parallel:
                break
            if (self.config.kv_unified and self._active
                    and self._cells_in_use() + len(entry.request.prompt) >= self.ctx.n_ctx):
                break  # its prompt would not fit beside the running sequences: wait for one to end
            if slot is None and len(self._free_ids) + len(self._kept) < n:
                break  # every spare id is a session's: wait for a running request to finish
            heapq.heappop(self._waiting)
            with self._lock:
                self._queued -= 1
            self._start(entry)
        for entry in deferred:
            heapq.heappush(self._waiting, entry)

    def _start(self, entry: _Entry) -> None:
        request = entry.request
        self._counters["prompt_tokens"] += len(request.prompt)
        if request.session is not None:
            request.session.busy = True
        leader = self._place_leader(entry)
        entry.choices.append(leader)
        self._active.append(leader)
        for index in range(1, request.n):
            follower = _Choice(request, index, entry.sink, entry.loop, self._take_seq_id())
            follower.state = _FOLLOW
            follower.leader = leader
            follower.target = len(request.prompt)
            follower.share_row = True
            leader.followers.append(follower)
            entry.choices.append(follower)
            self._active.append(follower)

    def _place_leader(self, entry: _Entry) -> _Choice:
        """Starts the request's first sequence from the longest prefix on offer: a session's own
        KV, a kept sequence (taken over), a running or idle session's sequence (shared with
        seq_cp), or a cached state (restored)."""
        request = entry.request
        prompt = request.prompt
        limit = len(prompt) - 1  # at least one token must be evaluated to get logits
        slot: SessionSlot | None = request.session
        reuse = not request.prompt_logprobs
        lora = request.lora  # KV computed with other LoRA adapters is not this request's
        shifts = position_shifts(request) if request.media else None

        def usable(seq_id: int, n: int) -> int:  # n, or 0 where the window before it is gone
            return n if self._window_held(seq_id, position(shifts, n)) else 0

        own_len = 0
        if slot is not None and reuse and slot.lora == lora:
            own_len = usable(slot.seq_id, self._reusable(common_prefix(prompt, slot.tokens, limit), len(slot.tokens)))
        best_kept, best_kept_len = -1, 0
        if reuse:
            for seq_id, tokens in self._kept.items():
                if self._kept_lora.get(seq_id, ()) != lora:
                    continue
                n = usable(seq_id, self._reusable(common_prefix(prompt, tokens, limit), len(tokens)))
                if n > best_kept_len:
                    best_kept, best_kept_len = seq_id, n
        best_live, best_live_len, best_future, best_future_len = -1, 0, None, 0
        if reuse:
            for other in self._active:
                if other.state == _FOLLOW or other.request.lora != lora:
                    continue
                evaluated = self._reusable(common_prefix(prompt, other.tokens, min(limit, other.n_past)), other.n_past)
                evaluated = usable(other.seq_id, evaluated)
                if evaluated > best_live_len:
                    best_live, best_live_len = other.seq_id, evaluated
                if other.state == _PREFILL:
                    # (a recurrent leader passes any point inside its prompt mid-step: only the state
                    # after its whole prompt can be copied)
                    future = self._reusable(common_prefix(prompt, other.tokens, min(limit, other.n_prompt)),
                                            other.n_prompt)
                    if future > best_future_len:
                        best_future, best_future_len = other, future
            for other_slot in self._sessions.values():
                if other_slot is not slot and not other_slot.busy and other_slot.lora == lora:
                    n = self._reusable(common_prefix(prompt, other_slot.tokens, limit), len(other_slot.tokens))
                    n = usable(other_slot.seq_id, n)
                    if n > best_live_len:
                        best_live, best_live_len = other_slot.seq_id, n
        restore_len = 0
        if reuse and request.restore is not None and not lora:
            restore_len = self._reusable(common_prefix(prompt, request.restore.tokens, limit),
                                         len(request.restore.tokens))

        if request.media:  # a shared prefix ends before a medium it would cut
            def cut(n: int) -> int:
                return self._reusable(before_media(request, n), n)

            own_len = usable(slot.seq_id, cut(own_len)) if own_len else 0
            best_kept_len = usable(best_kept, cut(best_kept_len)) if best_kept_len else 0
            best_live_len = usable(best_live, cut(best_live_len)) if best_live_len else 0
            best_future_len = cut(best_future_len)
            restore_len = cut(restore_len)
        # At equal length the cheaper source wins: own KV, then taking a kept sequence over,
        # then sharing cells, then restoring bytes.
        offers = {"own": own_len, "kept": best_kept_len, "share": best_live_len, "restore": restore_len}
        order = list(offers)
        source = max(order, key=lambda k: (offers[k], -order.index(k)))
        seq_id = -1
        if source == "restore" and restore_len > 0:
            target = slot.seq_id if slot is not None else self._take_seq_id()
            if slot is not None:
                self.ctx.seq_rm(target)
            if self._restore(target, request.restore, restore_len):
                seq_id = target
                self._counters["prompt_tokens_restored"] += restore_len
            else:  # fall back to the next best offer (the session's own KV is gone now)
                if slot is None:
                    heapq.heappush(self._free_ids, target)
                offers["restore"] = offers["own"] = 0
                if best_kept not in self._kept:  # taking an id may have evicted it
                    offers["kept"] = 0
                source = max(order, key=lambda k: (offers[k], -order.index(k)))
        length = offers[source]
        if length == 0:
            source = "none"
        cut = position(position_shifts(request) if request.media else None, length)  # where the kept KV ends
        if seq_id < 0:
            if slot is not None:
                seq_id = slot.seq_id
                self.ctx.seq_rm(seq_id, cut if source == "own" else 0, -1)
            elif source == "kept":
                seq_id = best_kept
                del self._kept[seq_id]
                self.ctx.seq_rm(seq_id, cut, -1)
            else:
                seq_id = self._take_seq_id()
            if source == "share":
                self._copy_prefix(best_live, seq_id, cut)
            elif source == "kept" and slot is not None:
                self._copy_prefix(best_kept, seq_id, cut)
                self._kept.move_to_end(best_kept)
        choice = _Choice(request, 0, entry.sink, entry.loop, seq_id)
        choice.n_past = choice.reused = length
        if (best_future is not None and best_future_len - choice.n_past >= self.config.min_shared_prefix):
            # Another request is evaluating the same prefix right now: wait for it
            # and copy its KV instead of computing the prefix twice.
            choice.state = _FOLLOW
            choice.leader = best_future
            choice.target = best_future_len
            best_future.followers.append(choice)
        self._counters["prompt_tokens_reused"] += choice.reused
        if request.prompt_logprobs:
            choice.prompt_logprobs = [None]
        if request.logprobs is not None:
            choice.logprobs = []
        return choice

    def _copy_prefix(self, src: int, dst: int, end: int) -> None:
        """Gives the empty sequence `dst` the KV of src's positions [0, end). In a unified cache
        the cells are shared; with a stream per sequence llama.cpp copies whole streams only,
        so the whole of src is copied and the tail beyond `end` dropped (a recurrent state is
        only ever shared whole)."""
        if self.config.kv_unified:
            self.ctx.seq_cp(src, dst, 0, end)
            return
        self.ctx.seq_cp(src, dst, -1, -1)
        if not self._recurrent:
            self.ctx.seq_rm(dst, end, -1)

    def _restore(self, seq_id: int, state: LlamaState, length: int) -> bool:
        """Loads a cached state into the empty sequence and keeps its first `length` tokens;
        False (sequence left empty) if llama.cpp refuses it (a warning logged) or the state lacks
        the sliding window before `length`."""
        try:
            self._load_sequence(seq_id, state)
        except (ValueError, AllamaError) as exc:
            log.warning("a cached prompt state could not be restored, evaluating the prompt instead: %s", exc)
            return False
        if not self._window_held(seq_id, length):  # the state lacks the window before `length`
            self.ctx.seq_rm(seq_id)
            return False
        self.ctx.seq_rm(seq_id, length, -1)
        return True

    def _load_sequence(self, seq_id: int, state: LlamaState) -> None:
        """Fills the empty sequence with a state's KV; ValueError (sequence left empty) if it does
        not fit this context or does not hold exactly the state's tokens. Kept sequences are
        dropped, least recently used first, while the KV cache has no room for it."""
        while True:
            try:
                self.ctx.seq_state_set(state.llama_state, seq_id)
                break
            except ValueError as exc:
                self.ctx.seq_rm(seq_id)
                if not self._kept or "available cells" not in str(exc):  # llama.cpp's "no room" message
                    raise
                dropped, _ = self._kept.popitem(last=False)
                self.ctx.seq_rm(dropped)
                heapq.heappush(self._free_ids, dropped)
        n = state.n_tokens
        if self.ctx.seq_pos_max(seq_id) != n - 1 or (n > 0 and self.ctx.seq_pos_min(seq_id) != 0):
            self.ctx.seq_rm(seq_id)
            raise ValueError(f"the state's KV does not hold its {n} tokens")

    # --- one step ----------------------------------------------------------

    def _step(self) -> None:
        t_start = time.perf_counter()
        try:
            self._step_inner()
        finally:
            self._seconds["step"] += time.perf_counter() - t_start

    def _lora_for_step(self, only: _Choice | None) -> tuple:
        """The LoRA adapter set this step decodes with, applied to the context. llama.cpp applies
        adapters to a whole batch, so requests with different sets take turns, step by step."""
        sets: list[tuple] = []
        for choice in self._active:
            if choice.state != _FOLLOW and choice.request.lora not in sets:
                sets.append(choice.request.lora)
        if not sets:
            return self._lora_applied
        if only is not None:
            chosen = only.request.lora
        else:
            chosen = sets[0] if len(sets) == 1 else sets[self._lora_turn % len(sets)]
            self._lora_turn += 1
        if chosen != self._lora_applied:
            self.ctx.set_lora_adapters(list(chosen))
            self._lora_applied = chosen
        return chosen

    def _step_inner(self) -> None:
        batch = self._batch
        batch.clear()
        rows: list[tuple[_Choice, int]] = []
        included: list[tuple[_Choice, int]] = []   # (choice, tokens added)
        prompt_rows: list[tuple[_Choice, int, int]] = []  # (choice, first batch index, first position)
        # After a failed decode, the sequences it held are decoded one per step until each passes.
        only = next((c for c in self._active if c.suspect), None) if self._isolating else None
        self._isolating = only is not None
        lora = self._lora_for_step(only)
        speculating: list[tuple[_Choice, int, list[int]]] = []  # (choice, its first row, proposed tokens)
        if self.draft_model is not None:
            n_generating = sum(1 for c in self._active if c.state == _GENERATE and c.request.lora == lora)
            draft_budget = min(self._n_batch // 2, self._n_batch - n_generating)  # leave room for prefill
        # With a KV stream per sequence llama.cpp puts only runs of consecutive sequence ids in
        # one ubatch: the generating rows go in in id order (ids are handed out smallest first).
        generating = self._active if self.config.kv_unified else sorted(self._active, key=attrgetter("seq_id"))
        for choice in generating:
            if choice.request.lora != lora or (only is not None and choice is not only) or choice.parked:
                continue
            if choice.state == _GENERATE:
                pos = position(choice.shifts, choice.n_past)
                proposal = self._propose(choice, draft_budget) if self.draft_model is not None else None
                if proposal:
                    speculating.append((choice, batch.n_tokens, proposal))
                    batch.add(choice.tokens[-1], pos, choice.seq_id, True)
                    for k, token in enumerate(proposal):
                        batch.add(token, pos + 1 + k, choice.seq_id, True)
                    draft_budget -= len(proposal)
                else:
                    rows.append((choice, batch.n_tokens))
                    batch.add(choice.tokens[-1], pos, choice.seq_id, True)
                included.append((choice, 1))
        budget = self._n_batch - batch.n_tokens
        failed: list[tuple[_Choice, BaseException]] = []
        for choice in self._active:
            if budget <= 0:
                break
            if (choice.state != _PREFILL or choice.request.lora != lora or choice.parked
                    or (only is not None and choice is not only)):
                continue
            if choice.request.media:
                error = self._prefill_media(choice)
                if error is not None:
                    failed.append((choice, error))
                    continue
            start = choice.n_past
            take = min(len(choice.tokens) - start, budget)
            if choice.request.media:
                take = min(take, next_media_start(choice.request, start) - start)
            completes = start + take == len(choice.tokens)
            if choice.prompt_logprobs is not None:
                prompt_rows.append((choice, batch.n_tokens, start))
                for k in range(take):
                    batch.add(choice.tokens[start + k], start + k, choice.seq_id, True)
            else:
                batch.add_tokens(choice.tokens[start:start + take], position(choice.shifts, start), choice.seq_id,
                                 completes)
            if completes:
                rows.append((choice, batch.n_tokens - 1))
            included.append((choice, take))
            budget -= take
        for choice, error in failed:
            self._finish(choice, error=error)
        if batch.n_tokens == 0:
            self._flush()
            return

        t_decode = time.perf_counter()
        try:
            self.ctx.decode(batch)
        except KVCacheFullError:
            self._make_room()
            return
        except DecodeAbortedError:
            raise
        except DecodeError as exc:
            self._recover_failed_decode(included, exc)
            return
        finally:
            self._seconds["decode"] += time.perf_counter() - t_decode
        for choice, _ in included:
            choice.suspect = False
        self._counters["decode_calls"] += 1
        if batch.n_tokens > 1:
            self._multi_token_decodes += 1
        else:
            self._single_token_decodes += 1

        for choice, added in included:
            if choice.state == _PREFILL:
                self._counters["prompt_tokens_evaluated"] += min(added, max(0, choice.n_prompt - choice.n_past))
            choice.n_past += added
        for choice, first, pos0 in prompt_rows:
            self._score_prompt(choice, first, pos0)
        self._activate_followers(rows)

        jobs = []
        special: list[tuple[_Choice, int]] = []
        sampled: list[tuple[_Choice, int]] = []
        for choice, row in rows:
            if choice.request.logits_processor is not None:
                special.append((choice, row))
            else:
                jobs.append((choice.chain, row))
                sampled.append((choice, row))
        t_sample = time.perf_counter()
        results = _native.sample_batch(self.ctx, jobs) if jobs else []
        self._seconds["sample"] += time.perf_counter() - t_sample
        for (choice, row), result in zip(sampled, results):
            self._accept(choice, row, result)
        for choice, row in special:
            try:
                ids = np.asarray(choice.tokens, dtype=np.intc)
                scores = choice.request.logits_processor(ids, self.ctx.logits(row))
                result: Any = choice.chain.sample_logits(np.ascontiguousarray(scores, dtype=np.float32))
            except Exception as exc:  # noqa: BLE001 - a user callback failed: end that request
                result = exc
            self._accept(choice, row, result)
        for choice, first, proposal in speculating:
            self._verify(choice, first, proposal)
        # llama.cpp's own count of evaluated tokens (it reports an empty counter as 1),
        # updated before the outputs go out so that a caller sees counts that include them.
        perf = self.ctx.perf()
        self._llama_tokens = (perf["n_p_eval"] if self._multi_token_decodes else 0) + \
            (perf["n_eval"] if self._single_token_decodes else 0)
        self._flush()

    def _recover_failed_decode(self, included: list[tuple[_Choice, int]], error: DecodeError) -> None:
        """llama.cpp failed the batch, and the ubatches it managed stay in the KV cache. Each
        sequence is cut back to where it stood before the step. A batch of one sequence fails
        that request; a larger one is retried one sequence per step, so that only the request
        whose decode fails again ends and the others go on as if nothing happened."""
        log.warning("a decode of %d sequences failed (%s); %s", len(included), error,
                    "failing its request" if len(included) == 1 else "retrying them one at a time")
        for choice, _ in included:
            cut = self.ctx.seq_rm(choice.seq_id, position(choice.shifts, choice.n_past), -1)
            if len(included) == 1 or not cut:  # alone, or a recurrent state that cannot be cut back
                self._finish(choice, error=error)
            else:
                choice.suspect = True
                self._isolating = True
        self._flush()

    def _propose(self, choice: _Choice, budget: int) -> list[int] | None:
        """The draft model's proposal for a generating choice, cut to what may still be
        generated and to `budget` tokens; None when it proposes nothing or may not."""
        request = choice.request
        limit = min(budget, choice.draft_cap, self.config.n_ctx - len(choice.tokens) - 1)
        if request.max_tokens is not None:
            limit = min(limit, request.max_tokens - choice.generated - 1)
        if limit <= 0 or request.logits_processor is not None:
            return None
        return proposal(self.draft_model, choice.tokens, limit, self.ctx.n_vocab)

    def _verify(self, choice: _Choice, first: int, proposal: list[int]) -> None:
        """Samples the choice's rows in order while the samples confirm the proposal (each row
        saw the proposed tokens before it), drops the KV of the refused rest, and emits the
        confirmed tokens plus the one sampled after them: what one-at-a-time decoding gives."""
        results: list[Any] = []
        for i in range(len(proposal) + 1):
            result = _native.sample_batch(self.ctx, [(choice.chain, first + i)])[0]
            results.append(result)
            if (i == len(proposal) or isinstance(result, BaseException) or int(result) != proposal[i]
                    or self.vocab.is_eog(int(result))):
                break
        accepted = len(results) - 1
        choice.draft_cap = next_cap(choice.draft_cap, len(proposal), accepted)
        self._counters["draft_tokens"] += len(proposal)
        self._counters["draft_tokens_accepted"] += accepted
        base = choice.n_past - 1  # the index of the token decoded at row `first`
        if accepted < len(proposal):
            self.ctx.seq_rm(choice.seq_id, position(choice.shifts, base + 1 + accepted), -1)
        choice.drafted = accepted > 0
        for i, result in enumerate(results):
            choice.n_past = base + 1 + i  # evaluated: up to the token before this one
            self._accept(choice, first + i, result)
            if choice not in self._active:
                return
        choice.drafted = False

    def _activate_followers(self, rows: list[tuple[_Choice, int]]) -> None:
        completed_row = {id(choice): row for choice, row in rows}
        for leader in [c for c in self._active if c.followers]:
            ready = [f for f in leader.followers if leader.n_past >= f.target]
            for follower in ready:
                leader.followers.remove(follower)
                if not self._window_held(leader.seq_id, position(follower.shifts, follower.target)):
                    follower.leader = None  # the leader's window before the target is gone: evaluate it
                    follower.state = _PREFILL
                    continue
                gained = follower.target - follower.n_past
                self.ctx.seq_rm(follower.seq_id)  # its own shorter prefix, if any, is replaced
                self._copy_prefix(leader.seq_id, follower.seq_id, position(follower.shifts, follower.target))
                follower.n_past = follower.target
                follower.leader = None
                if follower.share_row:
                    # n > 1: the same prompt, so the leader's last-token logits serve this choice too.
                    row = completed_row.get(id(leader))
                    follower.state = _GENERATE if row is not None else _PREFILL
                    if row is None:
                        follower.n_past = max(0, follower.target - 1)
                        self.ctx.seq_rm(follower.seq_id, position(follower.shifts, follower.n_past), -1)
                    else:
                        rows.append((follower, row))
                else:
                    follower.reused += gained
                    self._counters["prompt_tokens_reused"] += gained
                    follower.state = _PREFILL

    def _release_followers(self, leader: _Choice) -> None:
        for follower in leader.followers:
            shared = self._reusable(min(leader.n_past, follower.target, len(follower.tokens) - 1), leader.n_past)
            if shared > follower.n_past and self._window_held(leader.seq_id, position(follower.shifts, shared)):
                self.ctx.seq_rm(follower.seq_id)
                self._copy_prefix(leader.seq_id, follower.seq_id, position(follower.shifts, shared))
                gained = shared - follower.n_past
                follower.reused += gained
                self._counters["prompt_tokens_reused"] += gained
                follower.n_past = shared
            follower.leader = None
            follower.state = _PREFILL
        leader.followers = []

    def _accept(self, choice: _Choice, row: int, result: Any) -> None:
        if isinstance(result, BaseException):
            self._finish(choice, error=result)
            return
        token = int(result)
        request = choice.request
        if choice.state != _GENERATE:
            choice.state = _GENERATE
        choice.tokens.append(token)
        choice.generated += 1
        self._counters["tokens_generated"] += 1
        logprob = None
        if choice.logprobs is not None:
            logprob = self._logprob(self.ctx.logits(row), token, request.logprobs or 0)
            choice.logprobs.append(logprob)
        finish = None
        text = ""
        if self.vocab.is_eog(token) and not request.ignore_eos:
            finish = "stop"
        else:
            if self.tokenizer is None:
                text = choice.text.feed(self.vocab.token_to_piece(token))
            else:
                try:
                    context = [t for t in choice.tokens[-_DETOKENIZE_CONTEXT - 1:-1] if t >= 0]  # no media ids
                    text = choice.text.feed(bytes(self.tokenizer.detokenize([token], prev_tokens=context)))
                except Exception as exc:  # noqa: BLE001 - the user's tokenizer failed: end this request
                    self._finish(choice, error=exc)
                    return
            if choice.text.stopped:
                finish = "stop"
        if finish is None:
            if request.max_tokens is not None and choice.generated >= request.max_tokens:
                finish = "length"
            elif len(choice.tokens) >= self.config.n_ctx:
                finish = "length"
            elif request.stopping_criteria is not None:
                try:
                    ids = np.asarray(choice.tokens, dtype=np.intc)
                    if request.stopping_criteria(ids, self.ctx.logits(row)):
                        finish = "stop"
                except Exception as exc:  # noqa: BLE001
                    self._finish(choice, error=exc)
                    return
        if finish == "stop" and not text and self.vocab.is_eog(token) and not request.ignore_eos:
            # As llama-cpp-python: the end-of-generation token is neither text nor a completion token.
            choice.generated -= 1
            out = Output(choice.index, [], "")
        else:
            out = Output(choice.index, [token], text, logprobs=[logprob] if logprob is not None else None)
        if finish is not None:
            self._finish(choice, finish_reason=finish, last=out)
        else:
            self._emit(choice, out)

    @staticmethod
    def _logprob(logits: np.ndarray, token: int, top: int) -> TokenLogprob:
        shifted = logits - logits.max()
        logsum = float(np.log(np.exp(shifted, dtype=np.float64).sum()))
        logprobs = shifted - logsum
        top_ids = np.argpartition(-logprobs, top)[:top] if 0 < top < len(logprobs) else np.arange(0)
        top_ids = top_ids[np.argsort(-logprobs[top_ids])]
        return TokenLogprob(token, float(logprobs[token]), {int(t): float(logprobs[t]) for t in top_ids})

    def _prefill_media(self, choice: _Choice) -> BaseException | None:
        """Evaluates the media that start where the choice's prefill stands (their own decode
        calls, between the shared batches); the error if that failed."""
        for span in choice.request.media:
            if span.start == choice.n_past:
                try:
                    span.context.eval_media_chunk(self.ctx, span.chunks, span.index,
                                                  position(choice.shifts, choice.n_past), choice.seq_id,
                                                  self._n_batch)
                except Exception as exc:  # noqa: BLE001 - this request fails, the engine goes on
                    return exc
                self._counters["prompt_tokens_evaluated"] += span.length
                choice.n_past = span.end
        return None

    def _score_prompt(self, choice: _Choice, first: int, pos0: int) -> None:
        """Logprobs of the prompt tokens that follow the rows decoded this step."""
        top = choice.request.logprobs or 0
        n_rows = choice.n_past - pos0
        for k in range(n_rows):
            nxt = pos0 + k + 1
            if nxt >= choice.n_prompt:
                break
            choice.prompt_logprobs.append(self._logprob(self.ctx.logits(first + k), choice.tokens[nxt], top))

    # --- finishing -----------------------------------------------------------

    def _emit(self, to: Any, out: Output) -> None:
        """Queues an output for the request's event loop; _flush() delivers a step's outputs."""
        self._pending.setdefault(to.loop.key, (to.loop, []))[1].append((to.sink, out))

    def _finish(self, choice: _Choice, *, finish_reason: str | None = None, error: BaseException | None = None,
                last: Output | None = None, notify: bool = True) -> None:
        if choice not in self._active:
            return
        self._active.remove(choice)
        if choice.drafted:  # it ended inside confirmed draft tokens: KV beyond n_past is not its
            self.ctx.seq_rm(choice.seq_id, position(choice.shifts, choice.n_past), -1)
            choice.drafted = False
        if choice.leader is not None:
            choice.leader.followers.remove(choice)
            choice.leader = None
        if choice.followers:
            self._release_followers(choice)
        state = None
        if error is None and notify and choice.request.keep_state and choice.index == 0 and choice.n_past > 0:
            state = self._capture(choice)
        if choice.request.session is not None:
            self._settle_session(choice.request.session, choice, error)
        # Keep the KV of a cleanly finished sequence for prefix reuse.
        elif error is None and self.config.n_keep > 0 and choice.n_past > 0:
            self._kept[choice.seq_id] = choice.tokens[:choice.n_past]
            self._kept_lora[choice.seq_id] = choice.request.lora
            self._kept.move_to_end(choice.seq_id)
        else:
            self.ctx.seq_rm(choice.seq_id)
            heapq.heappush(self._free_ids, choice.seq_id)
        if error is None and choice.request.session is None:  # what save_state() gives (if kept)
            self._last_finished = (choice.seq_id, self._kept.get(choice.seq_id, []))
        if self._admission_paused:  # cells were freed: the parked sequences go first
            self._admission_paused = False
            for other in self._active:
                other.parked = False
        entry = self._entries.get(choice.request.id)
        if entry is None:
            return
        entry.finished += 1
        done = entry.finished == len(entry.choices)
        if done:
            del self._entries[choice.request.id]
            self._counters["requests_finished"] += 1
        if not notify:
            return
        out = last or Output(choice.index, [], "")
        if error is None:
            if not choice.text.stopped:
                out.text += choice.text.flush()
            out.finish_reason = finish_reason or "stop"
            if choice.prompt_logprobs is not None:
                out.prompt_logprobs = choice.prompt_logprobs
            out.state = state
        else:
            out.error = error
        if done and error is None:
            out.usage = {
                "prompt_tokens": len(choice.request.prompt),
                "completion_tokens": sum(c.generated for c in entry.choices),
                "cached_tokens": entry.choices[0].reused if entry.choices else 0,
            }
        self._emit(choice, out)

    def _capture(self, choice: _Choice) -> LlamaState | None:
        """The finished sequence's state for the prompt cache (None, with a warning, if llama.cpp
        cannot give it). The seed is the caller's to fill in."""
        try:
            data = self.ctx.seq_state_get(choice.seq_id)
        except Exception as exc:  # noqa: BLE001 - the completion itself succeeded
            log.warning("could not save a sequence state for the prompt cache: %s", exc)
            return None
        return LlamaState.of_sequence(choice.tokens[:choice.n_past], data, 0)

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for loop, items in pending.values():
            try:
                loop.post(_deliver, items)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                for sink, out in items:
                    self._drop_request_of(sink)

    def _drop_request_of(self, sink: OutputSink) -> None:
        for choice in [c for c in self._active if c.sink is sink]:
            self._finish(choice, error=EngineClosedError("the event loop closed"), notify=False)

    def _apply_cancels(self, ids: list[int]) -> None:
        wanted = set(ids)
        self.embedder.cancel(wanted)
        kept_waiting = [e for e in self._waiting if e.request.id not in wanted]
        if len(kept_waiting) != len(self._waiting):
            removed = len(self._waiting) - len(kept_waiting)
            self._waiting = kept_waiting
            heapq.heapify(self._waiting)
            with self._lock:
                self._queued -= removed
            self._counters["requests_cancelled"] += removed
        for choice in [c for c in self._active if c.request.id in wanted]:
            entry = self._entries.get(choice.request.id)
            self._finish(choice, error=AllamaError("cancelled"), notify=False)
            if entry is not None and choice.index == 0:
                self._counters["requests_cancelled"] += 1
        for request_id in wanted:
            self._entries.pop(request_id, None)

    def _expire_deadlines(self) -> None:
        if not self._timed:
            return
        now = time.monotonic()
        self._timed = [e for e in self._timed if e.request.id in self._entries]
        for entry in list(self._timed):
            timeout = entry.request.timeout
            if now - entry.request.submitted_at < timeout:
                continue
            error = RequestTimeoutError(f"the request did not finish within its timeout of {timeout} s")
            if entry in self._waiting:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
                with self._lock:
                    self._queued -= 1
                del self._entries[entry.request.id]
                self._emit(entry, Output(0, [], "", error=error))
            for choice in [c for c in self._active if c.request is entry.request]:
                self._finish(choice, error=error)
        self._flush()

    def _cells_in_use(self) -> int:
        """An upper bound on the KV cells the active sequences will hold once their prompts are
        in (prefixes shared through seq_cp are counted twice; kept sequences not at all: they
        are dropped when room is needed)."""
        used = 0
        for choice in self._active:
            if choice.parked:
                continue
            used += len(choice.tokens) - (choice.target if choice.state == _FOLLOW else 0)
        return used

    def _make_room(self) -> None:
        """The KV cache is full: drop kept sequences first, else park the newest sequence (its
        KV removed; it is recomputed from its tokens once another sequence ends). The oldest
        sequence is never parked, so it always progresses; alone, it fails only when it needs
        more than the whole cache."""
        if self._kept:
            seq_id, _ = self._kept.popitem(last=False)
            self.ctx.seq_rm(seq_id)
            heapq.heappush(self._free_ids, seq_id)
            return
        candidates = [c for c in self._active if c.state != _FOLLOW and not c.parked]
        if len(candidates) <= 1:
            victim = candidates[0] if candidates else self._active[-1]
            self._finish(victim, error=KVCacheFullError(
                f"the KV cache ({self.ctx.n_ctx} cells, kv_size) cannot hold this request"))
            self._flush()
            return
        victim = max(candidates, key=lambda c: (-c.request.priority, c.request.submitted_at, c.index))
        if victim.followers:
            self._release_followers(victim)
        self.ctx.seq_rm(victim.seq_id)
        victim.n_past = 0
        victim.state = _PREFILL
        victim.parked = True
        self._admission_paused = True
        self._counters["preemptions"] += 1
        log.info("KV cache full: request %d is parked and will be recomputed", victim.request.id)

    def _shutdown(self) -> None:
        error = EngineClosedError("the model was closed")
        with self._lock:
            embeds, self._embed_inbox = self._embed_inbox, []
        for request, sink, loop in embeds:
            self.embedder.add(request, sink, loop)
        self.embedder.fail_all(self._emit, error)
        self.embedder.close()
        for choice in list(self._active):
            self._finish(choice, error=error)
        for entry in self._waiting:
            self._emit(entry, Output(0, [], "", error=error))
        with self._lock:
            self._queued = 0
            inbox, self._inbox = self._inbox, []
        for entry in inbox:
            self._emit(entry, Output(0, [], "", error=error))
        self._waiting = []
        for slot in self._sessions.values():
            slot.closed = True
        self._flush()
        self.ctx.close()


def _deliver(items: list[tuple[OutputSink, Output]]) -> None:
    """Runs on the event loop: hands each output to its request's sink."""
    by_sink: dict[int, tuple[OutputSink, list[Output]]] = {}
    for sink, out in items:
        by_sink.setdefault(id(sink), (sink, []))[1].append(out)
    for sink, outs in by_sink.values():
        sink.push(outs, any(o.finish_reason is not None or o.error is not None for o in outs))
