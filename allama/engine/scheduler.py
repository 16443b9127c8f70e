"""The scheduler: one decode thread per model runs every request's sequences.

Each step builds one batch from one token of every generating sequence plus prompt chunks
of sequences in prefill (up to n_batch tokens), decodes it with the GIL released, samples
every sequence in one native call, and hands the outputs to each waiting event loop with
one thread-safe call per loop.

The scheduler owns admission, batch building and the step; the pieces it drives are
`PrefixCache` (which KV a sequence starts from, kept sequences, followers),
`SessionTable` (sessions and the last completion's state), `OutputProcessor` (tokens to
text deltas, stops, logprobs, usage) and `OutputPost` (delivery to event loops).

Only the decode thread touches the context. The event loop talks to it through `submit`,
`cancel` and `close`, which only append to a locked inbox, and through the session calls
(`open_session`, `save_session`, ...), which queue a function for the decode thread to run
between steps.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import Any

import numpy as np

from allama import _native
from allama.engine import process_hooks
from allama.engine.embedding import EmbeddingRunner, EmbedRequest
from allama.engine.engine_call import EngineCall
from allama.engine.inbox import Inbox
from allama.engine.loop_handle import LoopHandle
from allama.engine.media_positions import check_media, next_media_start, position
from allama.engine.output_post import OutputPost
from allama.engine.output_processor import OutputProcessor
from allama.engine.output_sink import OutputSink
from allama.engine.prefix_cache import PrefixCache
from allama.engine.process_hooks import block_interrupts
from allama.engine.request import Output, Request
from allama.engine.sequence import FOLLOWING, GENERATING, PREFILLING, Sequence, Submission
from allama.engine.session_slot import SessionSlot
from allama.engine.sessions import SessionTable
from allama.engine.speculation import next_cap, proposal
from allama.engine.stats import EngineStats
from allama.errors import (
    AllamaError,
    DecodeAbortedError,
    DecodeError,
    EngineClosedError,
    KVCacheFullError,
    RequestTimeoutError,
    WorkerLostError,
)
from allama.state import LlamaState

log = logging.getLogger("allama.engine")


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

    @staticmethod
    def default_n_keep(n_parallel: int, kv_unified: bool) -> int:
        """Kept sequences when the caller does not say: one per running sequence in a unified
        cache, where they hold only cells nobody else needs; with a stream per sequence each
        one costs a whole window of memory, so a quarter as many (at least one)."""
        return n_parallel if kv_unified else max(1, n_parallel // 4)


class StepBatch:
    """What one step put in the batch, and which rows it samples."""

    __slots__ = ("included", "rows", "prompt_rows", "speculating")

    def __init__(self) -> None:
        self.included: list[tuple[Sequence, int]] = []            # (sequence, tokens it added)
        self.rows: list[tuple[Sequence, int]] = []                # (sequence, the row it samples)
        self.prompt_rows: list[tuple[Sequence, int, int]] = []    # (sequence, first row, first position)
        self.speculating: list[tuple[Sequence, int, list[int]]] = []  # (sequence, first row, proposal)


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
        recurrent = model.is_recurrent or model.is_hybrid
        self.vocab = _native.Vocab(model)
        self.tokenizer = tokenizer  # a BaseLlamaTokenizer that turns tokens into text; None: the vocabulary
        self.draft_model = draft_model  # a LlamaDraftModel proposing tokens for speculative decoding
        if draft_model is not None and recurrent:
            # refused draft tokens could not be dropped from the state again
            log.warning("speculative decoding is off: this model's recurrent memory cannot drop refused draft tokens")
            self.draft_model = None
        self.ctx = _native.Context(model, context_params)
        self._n_batch = min(config.n_batch, self.ctx.n_batch)
        self._batch = _native.Batch(self._n_batch, 1)
        self.prefix_cache = PrefixCache(self.ctx, n_ids, kv_unified=config.kv_unified,
                                        recurrent=recurrent, n_swa=model.n_swa,
                                        min_shared_prefix=config.min_shared_prefix)
        self.sessions = SessionTable(self.ctx, self.prefix_cache, config.n_keep)
        self.outputs = OutputProcessor(self.ctx, self.vocab, config.n_ctx, tokenizer)
        self._post = OutputPost()

        self._inbox = Inbox(config.max_queue)  # the only state shared with the event loops
        self._forked = False

        # decode-thread state
        self._waiting: list[Submission] = []  # heap by priority, then arrival
        self._submissions: dict[int, Submission] = {}  # request id -> its submission, until it ends
        self._active: list[Sequence] = []
        self._timed: list[Submission] = []    # submissions with a timeout
        self._isolating = False               # some sequences are suspects of a failed decode
        self._admission_paused = False        # a sequence is parked: it goes before new requests
        self._lora_applied: tuple = ()        # the adapters the context decodes with now
        self._lora_turn = 0                   # round robin between requests' adapter sets

        self._counters = dict(prompt_tokens=0, prompt_tokens_evaluated=0, tokens_generated=0, decode_calls=0,
                              preemptions=0, requests_finished=0, requests_cancelled=0, draft_tokens=0,
                              draft_tokens_accepted=0)
        self._seconds = dict(step=0.0, decode=0.0, sample=0.0)
        self._llama_tokens = 0
        self._multi_token_decodes = 0
        self._single_token_decodes = 0
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
        self._inbox.submit(request, sink, loop, self.config.n_parallel - len(self._active))

    def submit_embedding(self, request: EmbedRequest, sink: OutputSink, loop: LoopHandle) -> None:
        """Queues inputs to embed; their outputs arrive one per input, in completion order."""
        self._check_not_forked()
        self._inbox.submit_embedding((request, sink, loop))

    def cancel(self, request: Request | EmbedRequest) -> None:
        """Frees the request's sequences at the next step (safe from any thread)."""
        self._inbox.cancel(request.id)

    def stats(self) -> EngineStats:
        c = self._counters
        decode_calls = c["decode_calls"]
        return EngineStats(
            active=len(self._active), queued=self._inbox.queued, kept=len(self.prefix_cache.kept),
            prompt_tokens=c["prompt_tokens"], prompt_tokens_evaluated=c["prompt_tokens_evaluated"],
            prompt_tokens_reused=self.prefix_cache.tokens_reused, tokens_generated=c["tokens_generated"],
            decode_calls=decode_calls, llama_tokens_evaluated=self._llama_tokens,
            mean_batch_size=self._llama_tokens / decode_calls if decode_calls else 0.0,
            preemptions=c["preemptions"], requests_finished=c["requests_finished"],
            requests_cancelled=c["requests_cancelled"], embedding_inputs=self.embedder.inputs_embedded,
            embedding_batches=self.embedder.batches, step_seconds=self._seconds["step"],
            decode_seconds=self._seconds["decode"], sample_seconds=self._seconds["sample"],
            sessions=len(self.sessions), prompt_tokens_restored=self.prefix_cache.tokens_restored,
            draft_tokens=c["draft_tokens"], draft_tokens_accepted=c["draft_tokens_accepted"])

    def close(self, timeout: float | None = None) -> None:
        """Fails pending and running requests with EngineClosedError and frees the context."""
        if self._forked:  # no decode thread here, and the lock may have been copied held
            self._inbox.mark_closing()
            return
        self._inbox.close()
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
        return self._inbox.closing

    def held_prefix(self, prompt: list[int]) -> int:
        """About how many leading prompt tokens the engine already holds KV for (kept, running or
        session sequences). A hint for the loop side: it reads the decode thread's state without
        locking, so it can be a step out of date."""
        try:
            held = [*(s.tokens for s in list(self.sessions.slots.values())),
                    *(s.tokens[:s.n_past] for s in list(self._active))]
            return self.prefix_cache.held_prefix(prompt, held)
        except RuntimeError:  # changed while being read
            return 0

    def set_draft_model_soon(self, draft_model: Any) -> None:
        """Switches speculative decoding to another draft model (None: off) between two steps;
        never raises (a closed engine has no steps left; a recurrent model never drafts)."""
        if self.prefix_cache.recurrent:
            return
        try:
            self._queue_call(EngineCall(partial(setattr, self, "draft_model", draft_model), None))
        except EngineClosedError:
            pass

    # --- sessions (awaited from the event loop, run on the decode thread) ----------

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Runs fn() on the decode thread between steps and returns its result (or raises its error)."""
        job = EngineCall(fn, LoopHandle.current())
        self._queue_call(job)
        return await job.wait()

    def _queue_call(self, job: EngineCall) -> None:
        self._check_not_forked()
        self._inbox.call(job)

    async def open_session(self) -> SessionSlot:
        """A sequence of its own for a session, kept until close_session()."""
        return await self.call(self.sessions.open)

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
        return await self.call(lambda: self.sessions.save(slot, seed))

    async def load_session(self, slot: SessionSlot, state: LlamaState) -> None:
        """Replaces the session's history with a saved state; ValueError if it does not fit."""
        await self.call(lambda: self.sessions.load(slot, state))

    @property
    def last_completion_tokens(self) -> list[int]:
        """The tokens of the most recently finished completion (prompt and output, but the
        last sampled token), whose KV its kept sequence holds; [] before any."""
        last = self.sessions.last_finished  # one read: the decode thread replaces the tuple whole
        return list(last[1]) if last is not None else []

    async def save_last_completion(self, seed: int) -> LlamaState | None:
        """The tokens and KV of the most recently finished completion, while its kept sequence
        still holds them (None if there was none since forget_last_completion(), or its KV
        was dropped or taken over by a later request)."""
        return await self.call(lambda: self.sessions.save_last_completion(seed))

    async def forget_last_completion(self) -> None:
        await self.call(lambda: setattr(self.sessions, "last_finished", None))

    def _close_session(self, slot: SessionSlot) -> None:
        for seq in [s for s in self._active if s.request.session is slot]:
            self._finish(seq, error=EngineClosedError("the session was closed"))
        self.sessions.close(slot)

    # ------------------------------------------------------------------ decode thread

    def _run(self) -> None:
        block_interrupts()
        try:
            while True:
                mail = self._inbox.take(self._idle)
                for submission in mail.submissions:
                    heapq.heappush(self._waiting, submission)
                    self._submissions[submission.request.id] = submission
                    if submission.request.timeout is not None:
                        self._timed.append(submission)
                for request, sink, loop in mail.embeddings:
                    self.embedder.add(request, sink, loop)
                if mail.cancels:
                    self._apply_cancels(mail.cancels)
                if mail.closing:
                    for call in mail.calls:
                        call.fail(EngineClosedError("the model was closed"))
                    self._shutdown()
                    return
                for call in mail.calls:
                    call.run()
                if mail.calls:
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
                        if self._inbox.closing and isinstance(exc, DecodeAbortedError):
                            continue  # close() stopped the step: the next turn fails them as closed
                        log.exception("decode step failed")
                        for seq in list(self._active):
                            self._finish(seq, error=exc)
                        self._flush()
        except BaseException:  # pragma: no cover - last resort
            log.exception("the decode thread died")
            raise

    def _idle(self) -> bool:
        """Nothing to do until something is posted: no step to take, nothing to admit or embed."""
        return not (self._active or self.embedder.has_work() or (self._waiting and not self._admission_paused))

    # --- admission ---------------------------------------------------------

    def _admit(self) -> None:
        deferred: list[Submission] = []  # turns of a session whose previous turn still runs
        while self._waiting and not self._admission_paused:
            submission = self._waiting[0]
            slot = submission.request.session
            if slot is not None and (slot.busy or slot.closed):
                heapq.heappop(self._waiting)
                if slot.busy:
                    deferred.append(submission)
                    continue
                self._unqueue(submission, EngineClosedError("the session was closed"))
                continue
            n = submission.request.n
            if len(self._active) + n > self.config.n_parallel:
                break
            if (self.config.kv_unified and self._active
                    and self._cells_in_use() + len(submission.request.prompt) >= self.ctx.n_ctx):
                break  # its prompt would not fit beside the running sequences: wait for one to end
            if slot is None and self.prefix_cache.spare_ids < n:
                break  # every spare id is a session's: wait for a running request to finish
            heapq.heappop(self._waiting)
            try:
                self._start(submission)
            finally:  # counted active before it stops counting as queued: stats never show it neither
                self._inbox.admitted()
        for submission in deferred:
            heapq.heappush(self._waiting, submission)

    def _start(self, submission: Submission) -> None:
        request = submission.request
        self._counters["prompt_tokens"] += len(request.prompt)
        if request.session is not None:
            request.session.busy = True
        leader = self.prefix_cache.start(submission, self._active, self.sessions.slots.values())
        submission.sequences.append(leader)
        self._active.append(leader)
        for index in range(1, request.n):  # the other choices copy the leader's prompt KV
            follower = Sequence(request, index, submission.sink, submission.loop, self.prefix_cache.take_id())
            follower.share_row = True
            self.prefix_cache.follow(follower, leader, len(request.prompt))
            submission.sequences.append(follower)
            self._active.append(follower)

    def _unqueue(self, submission: Submission, error: BaseException) -> None:
        """Ends a request that waits for admission (already out of the waiting heap)."""
        self._inbox.admitted()
        del self._submissions[submission.request.id]
        self._emit(submission, Output(0, [], "", error=error))

    # --- one step ----------------------------------------------------------

    def _step(self) -> None:
        t_start = time.perf_counter()
        try:
            step = self._build_batch()
            if step is None:
                return
            t_decode = time.perf_counter()
            try:
                self.ctx.decode(self._batch)
            except KVCacheFullError:
                self._make_room()
                return
            except DecodeAbortedError:
                raise
            except DecodeError as exc:
                self._recover_failed_decode(step.included, exc)
                return
            finally:
                self._seconds["decode"] += time.perf_counter() - t_decode
            self._advance(step)
            self._sample(step)
            self._count_llama_tokens()
            self._flush()
        finally:
            self._seconds["step"] += time.perf_counter() - t_start

    def _build_batch(self) -> StepBatch | None:
        """Fills the batch: a token of each generating sequence (and its draft proposal), then
        prompt chunks while room is left; None (outputs flushed) when nothing could go in."""
        batch = self._batch
        batch.clear()
        step = StepBatch()
        # After a failed decode, the sequences it held are decoded one per step until each passes.
        only = next((s for s in self._active if s.suspect), None) if self._isolating else None
        self._isolating = only is not None
        lora = self._lora_for_step(only)
        draft_budget = 0
        if self.draft_model is not None:
            n_generating = sum(1 for s in self._active if s.phase == GENERATING and s.request.lora == lora)
            draft_budget = min(self._n_batch // 2, self._n_batch - n_generating)  # leave room for prefill
        # With a KV stream per sequence llama.cpp puts only runs of consecutive sequence ids in
        # one ubatch: the generating rows go in in id order (ids are handed out smallest first).
        generating = self._active if self.config.kv_unified else sorted(self._active, key=attrgetter("seq_id"))
        for seq in generating:
            if seq.phase != GENERATING or seq.request.lora != lora or seq.parked or (only and seq is not only):
                continue
            pos = seq.n_past if seq.shifts is None else position(seq.shifts, seq.n_past)
            proposed = self._propose(seq, draft_budget) if draft_budget > 0 else None
            if proposed:
                step.speculating.append((seq, batch.n_tokens, proposed))
                batch.add(seq.tokens[-1], pos, seq.seq_id, True)
                for k, token in enumerate(proposed):
                    batch.add(token, pos + 1 + k, seq.seq_id, True)
                draft_budget -= len(proposed)
            else:
                step.rows.append((seq, batch.n_tokens))
                batch.add(seq.tokens[-1], pos, seq.seq_id, True)
            step.included.append((seq, 1))
        budget = self._n_batch - batch.n_tokens
        failed: list[tuple[Sequence, BaseException]] = []
        for seq in self._active:
            if budget <= 0:
                break
            if seq.phase != PREFILLING or seq.request.lora != lora or seq.parked or (only and seq is not only):
                continue
            if seq.request.media:
                error = self._prefill_media(seq)
                if error is not None:
                    failed.append((seq, error))
                    continue
            start = seq.n_past
            take = min(len(seq.tokens) - start, budget)
            if seq.request.media:
                take = min(take, next_media_start(seq.request, start) - start)
            completes = start + take == len(seq.tokens)
            if seq.prompt_logprobs is not None:
                step.prompt_rows.append((seq, batch.n_tokens, start))
                for k in range(take):
                    batch.add(seq.tokens[start + k], start + k, seq.seq_id, True)
            else:
                batch.add_tokens(seq.tokens[start:start + take], position(seq.shifts, start), seq.seq_id, completes)
            if completes:
                step.rows.append((seq, batch.n_tokens - 1))
            step.included.append((seq, take))
            budget -= take
        for seq, error in failed:
            self._finish(seq, error=error)
        if batch.n_tokens == 0:
            self._flush()
            return None
        return step

    def _lora_for_step(self, only: Sequence | None) -> tuple:
        """The LoRA adapter set this step decodes with, applied to the context. llama.cpp applies
        adapters to a whole batch, so requests with different sets take turns, step by step."""
        sets: list[tuple] = []
        for seq in self._active:
            if seq.phase != FOLLOWING and seq.request.lora not in sets:
                sets.append(seq.request.lora)
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

    def _prefill_media(self, seq: Sequence) -> BaseException | None:
        """Evaluates the media that start where the sequence's prefill stands (their own decode
        calls, between the shared batches); the error if that failed."""
        for span in seq.request.media:
            if span.start == seq.n_past:
                try:
                    span.context.eval_media_chunk(self.ctx, span.chunks, span.index,
                                                  position(seq.shifts, seq.n_past), seq.seq_id, self._n_batch)
                except Exception as exc:  # noqa: BLE001 - this request fails, the engine goes on
                    return exc
                self._counters["prompt_tokens_evaluated"] += span.length
                seq.n_past = span.end
        return None

    def _advance(self, step: StepBatch) -> None:
        """After a decode: the sequences hold the tokens they added; prompts are scored and
        followers whose prefix is now there copy it."""
        for seq, _ in step.included:
            seq.suspect = False
        self._counters["decode_calls"] += 1
        if self._batch.n_tokens > 1:
            self._multi_token_decodes += 1
        else:
            self._single_token_decodes += 1
        for seq, added in step.included:
            if seq.phase == PREFILLING:
                self._counters["prompt_tokens_evaluated"] += min(added, max(0, seq.n_prompt - seq.n_past))
            seq.n_past += added
        for seq, first, pos0 in step.prompt_rows:
            self.outputs.score_prompt(seq, first, pos0)
        self.prefix_cache.activate_followers(self._active, step.rows)

    def _sample(self, step: StepBatch) -> None:
        """Samples every row in one native call (a logits processor's rows one by one), then
        verifies the draft proposals."""
        jobs = []
        sampled: list[tuple[Sequence, int]] = []
        processed: list[tuple[Sequence, int]] = []
        for seq, row in step.rows:
            if seq.request.logits_processor is None:
                jobs.append((seq.chain, row))
                sampled.append((seq, row))
            else:
                processed.append((seq, row))
        t_sample = time.perf_counter()
        results = _native.sample_batch(self.ctx, jobs) if jobs else []
        self._seconds["sample"] += time.perf_counter() - t_sample
        for (seq, row), result in zip(sampled, results):
            self._accept(seq, row, result)
        for seq, row in processed:
            try:
                ids = np.asarray(seq.tokens, dtype=np.intc)
                scores = seq.request.logits_processor(ids, self.ctx.logits(row))
                result: Any = seq.chain.sample_logits(np.ascontiguousarray(scores, dtype=np.float32))
            except Exception as exc:  # noqa: BLE001 - a user callback failed: end that request
                result = exc
            self._accept(seq, row, result)
        for seq, first, proposed in step.speculating:
            self._verify(seq, first, proposed)

    def _accept(self, seq: Sequence, row: int, result: Any) -> None:
        """A sampled token (or the error sampling raised) for the sequence."""
        if isinstance(result, BaseException):
            self._finish(seq, error=result)
            return
        seq.phase = GENERATING
        self._counters["tokens_generated"] += 1
        try:
            out, finish = self.outputs.accept(seq, row, int(result))
        except Exception as exc:  # noqa: BLE001 - a user callback (tokenizer, stopping criteria) failed
            self._finish(seq, error=exc)
            return
        if finish is None:
            self._post.add(seq.sink, seq.loop, out)
        else:
            self._finish(seq, finish_reason=finish, last=out)

    def _count_llama_tokens(self) -> None:
        """llama.cpp's own count of evaluated tokens (it reports an empty counter as 1), updated
        before the outputs go out so that a caller sees counts that include them."""
        perf = self.ctx.perf()
        self._llama_tokens = (perf["n_p_eval"] if self._multi_token_decodes else 0) + \
            (perf["n_eval"] if self._single_token_decodes else 0)

    def _recover_failed_decode(self, included: list[tuple[Sequence, int]], error: DecodeError) -> None:
        """llama.cpp failed the batch, and the ubatches it managed stay in the KV cache. Each
        sequence is cut back to where it stood before the step. A batch of one sequence fails
        that request; a larger one is retried one sequence per step, so that only the request
        whose decode fails again ends and the others go on as if nothing happened."""
        hopeless = len(included) == 1 or isinstance(error, WorkerLostError)  # a lost worker fails every decode
        log.warning("a decode of %d sequences failed (%s); %s", len(included), error,
                    "failing their requests" if hopeless else "retrying them one at a time")
        for seq, _ in included:
            cut = self.ctx.seq_rm(seq.seq_id, position(seq.shifts, seq.n_past), -1)
            if hopeless or not cut:  # alone, or a recurrent state that cannot be cut back
                self._finish(seq, error=error)
            else:
                seq.suspect = True
                self._isolating = True
        self._flush()

    # --- speculative decoding ----------------------------------------------

    def _propose(self, seq: Sequence, budget: int) -> list[int] | None:
        """The draft model's proposal for a generating sequence, cut to what may still be
        generated and to `budget` tokens; None when it proposes nothing or may not."""
        request = seq.request
        limit = min(budget, seq.draft_cap, self.config.n_ctx - len(seq.tokens) - 1)
        if request.max_tokens is not None:
            limit = min(limit, request.max_tokens - seq.generated - 1)
        if limit <= 0 or request.logits_processor is not None:
            return None
        return proposal(self.draft_model, seq.tokens, limit, self.ctx.n_vocab)

    def _verify(self, seq: Sequence, first: int, proposed: list[int]) -> None:
        """Samples the sequence's rows in order while the samples confirm the proposal (each row
        saw the proposed tokens before it), drops the KV of the refused rest, and emits the
        confirmed tokens plus the one sampled after them: what one-at-a-time decoding gives."""
        results: list[Any] = []
        for i in range(len(proposed) + 1):
            result = _native.sample_batch(self.ctx, [(seq.chain, first + i)])[0]
            results.append(result)
            if (i == len(proposed) or isinstance(result, BaseException) or int(result) != proposed[i]
                    or self.vocab.is_eog(int(result))):
                break
        accepted = len(results) - 1
        seq.draft_cap = next_cap(seq.draft_cap, len(proposed), accepted)
        self._counters["draft_tokens"] += len(proposed)
        self._counters["draft_tokens_accepted"] += accepted
        base = seq.n_past - 1  # the index of the token decoded at row `first`
        if accepted < len(proposed):
            self.ctx.seq_rm(seq.seq_id, position(seq.shifts, base + 1 + accepted), -1)
        seq.drafted = accepted > 0
        for i, result in enumerate(results):
            seq.n_past = base + 1 + i  # evaluated: up to the token before this one
            self._accept(seq, first + i, result)
            if seq not in self._active:
                return
        seq.drafted = False

    # --- finishing -----------------------------------------------------------

    def _emit(self, to: Sequence | Submission, out: Output) -> None:
        """Queues an output for the request's event loop; _flush() delivers a step's outputs."""
        self._post.add(to.sink, to.loop, out)

    def _flush(self) -> None:
        for sink in self._post.flush():  # their event loop is closed: nobody is listening any more
            for seq in [s for s in self._active if s.sink is sink]:
                self._finish(seq, error=EngineClosedError("the event loop closed"), notify=False)

    def _finish(self, seq: Sequence, *, finish_reason: str | None = None, error: BaseException | None = None,
                last: Output | None = None, notify: bool = True) -> None:
        if seq not in self._active:
            return
        self._active.remove(seq)
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
            state = self._capture(seq)
        if request.session is not None:
            self.sessions.settle(request.session, seq, error)
        elif error is None and self.config.n_keep > 0 and seq.n_past > 0:
            self.prefix_cache.keep(seq.seq_id, seq.tokens[:seq.n_past], request.lora)
        else:
            self.prefix_cache.free(seq.seq_id)
        if error is None and request.session is None:  # what save_state() gives (if kept)
            self.sessions.last_finished = (seq.seq_id, self.prefix_cache.kept.get(seq.seq_id, []))
        if self._admission_paused:  # cells were freed: the parked sequences go first
            self._admission_paused = False
            for other in self._active:
                other.parked = False
        submission = self._submissions.get(request.id)
        if submission is None:
            return
        submission.finished += 1
        if submission.finished == len(submission.sequences):
            del self._submissions[request.id]
            self._counters["requests_finished"] += 1
        if notify:
            self._emit(seq, self.outputs.final(seq, submission, last, finish_reason, error, state))

    def _capture(self, seq: Sequence) -> LlamaState | None:
        """The finished sequence's state for the prompt cache (None, with a warning, if llama.cpp
        cannot give it). The seed is the caller's to fill in."""
        try:
            data = self.ctx.seq_state_get(seq.seq_id)
        except Exception as exc:  # noqa: BLE001 - the completion itself succeeded
            log.warning("could not save a sequence state for the prompt cache: %s", exc)
            return None
        return LlamaState.of_sequence(seq.tokens[:seq.n_past], data, 0)

    def _apply_cancels(self, ids: list[int]) -> None:
        wanted = set(ids)
        self.embedder.cancel(wanted)
        still_waiting = [s for s in self._waiting if s.request.id not in wanted]
        if len(still_waiting) != len(self._waiting):
            removed = len(self._waiting) - len(still_waiting)
            self._waiting = still_waiting
            heapq.heapify(self._waiting)
            self._inbox.admitted(removed)
            self._counters["requests_cancelled"] += removed
        for seq in [s for s in self._active if s.request.id in wanted]:
            submission = self._submissions.get(seq.request.id)
            self._finish(seq, error=AllamaError("cancelled"), notify=False)
            if submission is not None and seq.index == 0:
                self._counters["requests_cancelled"] += 1
        for request_id in wanted:
            self._submissions.pop(request_id, None)

    def _expire_deadlines(self) -> None:
        if not self._timed:
            return
        now = time.monotonic()
        self._timed = [s for s in self._timed if s.request.id in self._submissions]
        for submission in list(self._timed):
            timeout = submission.request.timeout
            if now - submission.request.submitted_at < timeout:
                continue
            error = RequestTimeoutError(f"the request did not finish within its timeout of {timeout} s")
            if submission in self._waiting:
                self._waiting.remove(submission)
                heapq.heapify(self._waiting)
                self._unqueue(submission, error)
            for seq in [s for s in self._active if s.request is submission.request]:
                self._finish(seq, error=error)
        self._flush()

    def _cells_in_use(self) -> int:
        """An upper bound on the KV cells the active sequences will hold once their prompts are
        in (prefixes shared through seq_cp are counted twice; kept sequences not at all: they
        are dropped when room is needed)."""
        used = 0
        for seq in self._active:
            if not seq.parked:
                used += len(seq.tokens) - (seq.target if seq.phase == FOLLOWING else 0)
        return used

    def _make_room(self) -> None:
        """The KV cache is full: drop kept sequences first, else park the newest sequence (its
        KV removed; it is recomputed from its tokens once another sequence ends). The oldest
        sequence is never parked, so it always progresses; alone, it fails only when it needs
        more than the whole cache."""
        if self.prefix_cache.drop_oldest():
            return
        candidates = [s for s in self._active if s.phase != FOLLOWING and not s.parked]
        if len(candidates) <= 1:
            victim = candidates[0] if candidates else self._active[-1]
            self._finish(victim, error=KVCacheFullError(
                f"the KV cache ({self.ctx.n_ctx} cells, kv_size) cannot hold this request"))
            self._flush()
            return
        victim = max(candidates, key=lambda s: (-s.request.priority, s.request.submitted_at, s.index))
        if victim.followers:
            self.prefix_cache.release_followers(victim)
        self.ctx.seq_rm(victim.seq_id)
        victim.n_past = 0
        victim.phase = PREFILLING
        victim.parked = True
        self._admission_paused = True
        self._counters["preemptions"] += 1
        log.info("KV cache full: request %d is parked and will be recomputed", victim.request.id)

    def _shutdown(self) -> None:
        error = EngineClosedError("the model was closed")
        late = self._inbox.drain()
        for request, sink, loop in late.embeddings:
            self.embedder.add(request, sink, loop)
        self.embedder.fail_all(self._emit, error)
        self.embedder.close()
        for seq in list(self._active):
            self._finish(seq, error=error)
        for call in late.calls:
            call.fail(error)
        for submission in [*self._waiting, *late.submissions]:
            self._emit(submission, Output(0, [], "", error=error))
        self._waiting = []
        self.sessions.close_all()
        self._flush()
        self.ctx.close()
