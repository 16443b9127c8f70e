"""The scheduler: one decode thread per model runs every request's sequences.

Each step builds one batch from one token of every generating sequence plus prompt chunks
of sequences in prefill (up to n_batch tokens), decodes it with the GIL released, samples
every sequence in one native call, and hands the outputs to each waiting event loop with
one thread-safe call per loop. With `overlap_outputs`, a sampled token that only its text (a
stop string) could end goes into the next step's batch at once, and its text is made and
posted on a second thread while that batch decodes (`DeferredOutputs`).

The scheduler owns the decode thread's loop and the step; the pieces it drives are
`RequestTable` (admission, the waiting and running requests, how each ends), `BatchBuilder`
(what goes in a step's batch), `Speculator` (draft proposals and their verification),
`PrefixCache` (which KV a sequence starts from, kept sequences, followers), `SessionTable`
(sessions and the last completion's state), `OutputProcessor` (tokens to text deltas,
stops, logprobs, usage), `OutputPost` (delivery to event loops, through the table) and
`DeferredOutputs` (outputs made during the next decode).

Only the decode thread touches the context. The event loop talks to it through `submit`,
`cancel` and `close`, which only append to a locked inbox, and through the session calls
(`open_session`, `save_session`, ...), which queue a function for the decode thread to run
between steps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from allama import _native
from allama.engine import process_hooks
from allama.engine.batch_builder import BatchBuilder, StepBatch
from allama.engine.config import EngineConfig
from allama.engine.deferred_outputs import DeferredOutputs
from allama.engine.embedding import EmbeddingRunner, EmbedRequest
from allama.engine.engine_call import EngineCall
from allama.engine.inbox import Inbox
from allama.engine.loop_handle import LoopHandle
from allama.engine.media_positions import check_media, position
from allama.engine.output_processor import OutputProcessor
from allama.engine.output_sink import OutputSink
from allama.engine.prefix_cache import PrefixCache
from allama.engine.process_hooks import block_interrupts
from allama.engine.request import Request
from allama.engine.request_table import RequestTable
from allama.engine.sequence import GENERATING, PREFILLING, Sequence
from allama.engine.session_slot import SessionSlot
from allama.engine.sessions import SessionTable
from allama.engine.speculation import Speculator
from allama.engine.stats import EngineStats
from allama.errors import (
    AllamaError,
    DecodeAbortedError,
    DecodeError,
    EngineClosedError,
    KVCacheFullError,
    WorkerLostError,
)
from allama.state import LlamaState

log = logging.getLogger("allama.engine")


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
        if draft_model is not None and recurrent:
            # refused draft tokens could not be dropped from the state again
            log.warning("speculative decoding is off: this model's recurrent memory cannot drop refused draft tokens")
            draft_model = None
        self.ctx = _native.Context(model, context_params)
        self._warm_up()
        self.prefix_cache = PrefixCache(self.ctx, n_ids, kv_unified=config.kv_unified,
                                        recurrent=recurrent, n_swa=model.n_swa,
                                        min_shared_prefix=config.min_shared_prefix)
        self.sessions = SessionTable(self.ctx, self.prefix_cache, config.n_keep)
        self.outputs = OutputProcessor(self.ctx, self.vocab, config.n_ctx, tokenizer)

        self._inbox = Inbox(config.max_queue)  # the only state shared with the event loops
        self._forked = False

        # decode-thread state
        self._counters = dict(prompt_tokens=0, prompt_tokens_evaluated=0, tokens_generated=0, decode_calls=0,
                              preemptions=0, requests_finished=0, requests_cancelled=0, draft_tokens=0,
                              draft_tokens_accepted=0)
        self.requests = RequestTable(self.ctx, config, self._inbox, self.prefix_cache, self.sessions,
                                     self.outputs, self._counters)
        self.speculator = Speculator(self.ctx, self.vocab, config.n_ctx, draft_model, self._counters)
        n_batch = min(config.n_batch, self.ctx.n_batch)
        self.batches = BatchBuilder(self.ctx, _native.Batch(n_batch, 1), n_batch, kv_unified=config.kv_unified,
                                    speculator=self.speculator, counters=self._counters)
        self._seconds = dict(step=0.0, decode=0.0, sample=0.0)
        self._llama_tokens = 0
        self._multi_token_decodes = 0
        self._single_token_decodes = 0
        self.embedder = EmbeddingRunner(model, config.pooling_type, config.embed_max_tokens, config.embed_max_seqs,
                                        context_params.n_threads, context_params.n_threads_batch)
        # a recurrent state could not drop the token a stop string ends on once it was decoded
        self.deferred = DeferredOutputs(self.outputs, self.requests, enabled=config.overlap_outputs and not recurrent)
        self._thread = threading.Thread(target=self._run, name="allama-decode", daemon=True)
        self._thread.start()
        process_hooks.track(self)

    def _warm_up(self) -> None:
        """One decode of two tokens before the first request, as llama.cpp's own tools do: a
        context's first decodes fault the weights' pages in, fill its compute buffers and
        place its thread pool's workers, and the first request would otherwise pay for that."""
        if self.model.has_encoder or not self.model.has_decoder:
            return
        tokens = [t for t in (self.vocab.bos, self.vocab.eos) if t >= 0][:self.ctx.n_batch] or [0]
        batch = _native.Batch(len(tokens), 1)
        batch.add_tokens(tokens, 0, 0, True)
        t0 = time.perf_counter()
        try:
            self.ctx.decode(batch)
        except AllamaError as exc:  # e.g. a lost RPC worker: the first request will say so
            log.warning("the warm-up decode failed: %s", exc)
        else:
            log.debug("warm-up decode of %d tokens: %.1f ms", len(tokens), (time.perf_counter() - t0) * 1e3)
        self.ctx.memory_clear()
        self.ctx.perf_reset()

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
        self._inbox.submit(request, sink, loop, self._free_slots)

    def _free_slots(self) -> int:
        return self.config.n_parallel - len(self.requests.active)

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
            active=len(self.requests.active), queued=self._inbox.queued, kept=len(self.prefix_cache.kept),
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
                    *(s.tokens[:s.n_past] for s in list(self.requests.active))]
            return self.prefix_cache.held_prefix(prompt, held)
        except RuntimeError:  # changed while being read
            return 0

    def set_draft_model_soon(self, draft_model: Any) -> None:
        """Switches speculative decoding to another draft model (None: off) between two steps;
        never raises (a closed engine has no steps left; a recurrent model never drafts)."""
        if self.prefix_cache.recurrent:
            return
        try:
            self._queue_call(EngineCall(partial(setattr, self.speculator, "draft_model", draft_model), None))
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
        await self.call(lambda: self.requests.close_session(slot))

    def close_session_soon(self, slot: SessionSlot) -> None:
        """close_session() without waiting (for a session dropped without aclose); never raises."""
        try:
            self._queue_call(EngineCall(lambda: self.requests.close_session(slot), None))
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

    # ------------------------------------------------------------------ decode thread

    def _run(self) -> None:
        block_interrupts()
        requests = self.requests
        try:
            while True:
                mail = self._inbox.take(self._idle)
                for submission in mail.submissions:
                    requests.add(submission)
                for request, sink, loop in mail.embeddings:
                    self.embedder.add(request, sink, loop)
                if mail.cancels:
                    wanted = set(mail.cancels)
                    self.embedder.cancel(wanted)
                    requests.cancel(wanted)
                if mail.closing:
                    for call in mail.calls:
                        call.fail(EngineClosedError("the model was closed"))
                    self._shutdown()
                    return
                for call in mail.calls:
                    call.run()
                if mail.calls:
                    requests.flush()
                requests.expire_deadlines()
                requests.admit()
                if self.embedder.has_work():
                    # one embedding batch between generation steps: generation slows by its compute only
                    try:
                        self.embedder.step(requests.emit)
                    except Exception as exc:  # noqa: BLE001 - e.g. the embeddings context cannot be made
                        self.embedder.fail_all(requests.emit, exc)
                    requests.flush()
                if requests.active:
                    try:
                        self._step()
                    except Exception as exc:  # noqa: BLE001 - a failed step fails its requests, not the engine
                        if self._inbox.closing and isinstance(exc, DecodeAbortedError):
                            continue  # close() stopped the step: the next turn fails them as closed
                        log.exception("decode step failed")
                        for seq in list(requests.active):
                            requests.finish(seq, error=exc)
                        requests.flush()
        except BaseException:  # pragma: no cover - last resort
            log.exception("the decode thread died")
            raise

    def _idle(self) -> bool:
        """Nothing to do until something is posted: no step to take, nothing to admit or embed."""
        return not (self.requests.has_work() or self.embedder.has_work())

    # --- one step ----------------------------------------------------------

    def _step(self) -> None:
        t_start = time.perf_counter()
        try:
            step = self.batches.build(self.requests.active)
            for seq, error in step.failed:
                self.requests.finish(seq, error=error)
            if self.batches.batch.n_tokens == 0:
                self.deferred.post_now()
                self.requests.flush()
                return
            if self._decode(step):
                self._advance(step)
                self._sample(step)
                self._count_llama_tokens()
            self.requests.flush()
        finally:
            self._seconds["step"] += time.perf_counter() - t_start

    def _decode(self, step: StepBatch) -> bool:
        """Decodes the step's batch (the last step's deferred outputs are made meanwhile);
        whether the step goes on to read the outputs."""
        t_decode = time.perf_counter()
        try:
            try:
                self.deferred.post_during(partial(self.ctx.decode, self.batches.batch))
            finally:
                stopped = self.deferred.end_stopped()  # stop strings found meanwhile
                self._seconds["decode"] += time.perf_counter() - t_decode
        except KVCacheFullError:
            self.requests.make_room()
            return False
        except DecodeAbortedError:
            raise
        except DecodeError as exc:
            self._recover_failed_decode([e for e in step.included if e[0] not in stopped], exc)
            return False
        if stopped:
            step.drop(stopped)
        return True

    def _advance(self, step: StepBatch) -> None:
        """After a decode: the sequences hold the tokens they added; prompts are scored and
        followers whose prefix is now there copy it."""
        for seq, _ in step.included:
            seq.suspect = False
        self._counters["decode_calls"] += 1
        if self.batches.batch.n_tokens > 1:
            self._multi_token_decodes += 1
        else:
            self._single_token_decodes += 1
        for seq, added in step.included:
            if seq.phase == PREFILLING:
                self._counters["prompt_tokens_evaluated"] += min(added, max(0, seq.n_prompt - seq.n_past))
            seq.n_past += added
        for seq, first, pos0 in step.prompt_rows:
            self.outputs.score_prompt(seq, first, pos0)
        self.prefix_cache.activate_followers(self.requests.active, step.rows)

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
        defer = self.deferred.worth_it(len(sampled))
        for (seq, row), result in zip(sampled, results):
            self._accept(seq, row, result, defer=defer)
        for seq, row in processed:
            try:
                ids = np.asarray(seq.tokens, dtype=np.intc)
                scores = seq.request.logits_processor(ids, self.ctx.logits(row))
                result: Any = seq.chain.sample_logits(np.ascontiguousarray(scores, dtype=np.float32))
            except Exception as exc:  # noqa: BLE001 - a user callback failed: end that request
                result = exc
            self._accept(seq, row, result)
        for seq, first, proposed in step.speculating:
            self.speculator.verify(seq, first, proposed, self._accept)

    def _accept(self, seq: Sequence, row: int, result: Any, defer: bool = False) -> bool:
        """A sampled token (or the error sampling raised) for the sequence; whether it goes on.
        With `defer`, a token that only its text could end gets its output during the next
        step's decode (if overlap_outputs is on)."""
        if isinstance(result, BaseException):
            self.requests.finish(seq, error=result)
            return False
        seq.phase = GENERATING
        self._counters["tokens_generated"] += 1
        token = int(result)
        if defer and self.deferred.defer(seq, token):
            return True
        try:
            out, finish = self.outputs.accept(seq, row, token)
        except Exception as exc:  # noqa: BLE001 - a user callback (tokenizer, stopping criteria) failed
            self.requests.finish(seq, error=exc)
            return False
        if finish is None:
            self.requests.emit_token(seq, out)
            return True
        self.requests.finish(seq, finish_reason=finish, last=out)
        return False

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
                self.requests.finish(seq, error=error)
            else:
                seq.suspect = True
                self.batches.isolating = True
        self.requests.flush()

    def _shutdown(self) -> None:
        error = EngineClosedError("the model was closed")
        late = self._inbox.drain()
        for request, sink, loop in late.embeddings:
            self.embedder.add(request, sink, loop)
        self.embedder.fail_all(self.requests.emit, error)
        self.embedder.close()
        self.requests.fail_all(error, late.submissions)
        for call in late.calls:
            call.fail(error)
        self.sessions.close_all()
        self.requests.flush()
        self.deferred.close()
        self.ctx.close()
