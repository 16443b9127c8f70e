"""Fills one step's batch: a token of each generating sequence (with its draft proposal), then
prompt chunks of sequences in prefill while room is left, all of one LoRA adapter set."""

from __future__ import annotations

from operator import attrgetter

from allama import _native
from allama.engine.media_positions import next_media_start, position
from allama.engine.sequence import FOLLOWING, GENERATING, PREFILLING, Sequence
from allama.engine.speculation import Speculator


class StepBatch:
    """What one step put in the batch, and which rows it samples."""

    __slots__ = ("included", "rows", "prompt_rows", "speculating", "failed")

    def __init__(self) -> None:
        self.included: list[tuple[Sequence, int]] = []            # (sequence, tokens it added)
        self.rows: list[tuple[Sequence, int]] = []                # (sequence, the row it samples)
        self.prompt_rows: list[tuple[Sequence, int, int]] = []    # (sequence, first row, first position)
        self.speculating: list[tuple[Sequence, int, list[int]]] = []  # (sequence, first row, proposal)
        self.failed: list[tuple[Sequence, BaseException]] = []    # (sequence, why its media failed)

    def drop(self, ended: set[Sequence]) -> None:
        """Forgets sequences that ended while the batch was decoded: nothing is read for them."""
        self.included = [e for e in self.included if e[0] not in ended]
        self.rows = [e for e in self.rows if e[0] not in ended]
        self.prompt_rows = [e for e in self.prompt_rows if e[0] not in ended]
        self.speculating = [e for e in self.speculating if e[0] not in ended]


class BatchBuilder:
    """Owns the native batch and the adapter set the context decodes with."""

    def __init__(self, ctx: _native.Context, batch: _native.Batch, n_batch: int, *, kv_unified: bool,
                 speculator: Speculator, counters: dict[str, int]) -> None:
        self.ctx = ctx
        self.batch = batch
        self.n_batch = n_batch          # tokens the batch takes
        self.kv_unified = kv_unified
        self.speculator = speculator
        self.counters = counters        # the engine's counters: media count as prompt_tokens_evaluated
        self.isolating = False          # some sequences are suspects of a failed decode
        self._lora_applied: tuple = ()  # the adapters the context decodes with now
        self._lora_turn = 0             # round robin between requests' adapter sets

    def build(self, active: list[Sequence]) -> StepBatch:
        """Fills the batch from the running sequences; sequences whose media failed to evaluate
        are in `failed`. The batch is empty when nothing could go in."""
        batch = self.batch
        batch.clear()
        step = StepBatch()
        # After a failed decode, the sequences it held are decoded one per step until each passes.
        only = next((s for s in active if s.suspect), None) if self.isolating else None
        self.isolating = only is not None
        lora = self._lora_for_step(active, only)
        draft_budget = 0
        if self.speculator.draft_model is not None:
            n_generating = sum(1 for s in active if s.phase == GENERATING and s.request.lora == lora)
            draft_budget = min(self.n_batch // 2, self.n_batch - n_generating)  # leave room for prefill
        # With a KV stream per sequence llama.cpp puts only runs of consecutive sequence ids in
        # one ubatch: the generating rows go in in id order (ids are handed out smallest first).
        generating = active if self.kv_unified else sorted(active, key=attrgetter("seq_id"))
        for seq in generating:
            if seq.phase != GENERATING or seq.request.lora != lora or seq.parked or (only and seq is not only):
                continue
            pos = seq.n_past if seq.shifts is None else position(seq.shifts, seq.n_past)
            proposed = self.speculator.propose(seq, draft_budget) if draft_budget > 0 else None
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
        budget = self.n_batch - batch.n_tokens
        for seq in active:
            if budget <= 0:
                break
            if seq.phase != PREFILLING or seq.request.lora != lora or seq.parked or (only and seq is not only):
                continue
            if seq.request.media:
                error = self._prefill_media(seq)
                if error is not None:
                    step.failed.append((seq, error))
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
        return step

    def _lora_for_step(self, active: list[Sequence], only: Sequence | None) -> tuple:
        """The LoRA adapter set this step decodes with, applied to the context. llama.cpp applies
        adapters to a whole batch, so requests with different sets take turns, step by step."""
        sets: list[tuple] = []
        for seq in active:
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
                                                  position(seq.shifts, seq.n_past), seq.seq_id, self.n_batch)
                except Exception as exc:  # noqa: BLE001 - this request fails, the engine goes on
                    return exc
                self.counters["prompt_tokens_evaluated"] += span.length
                seq.n_past = span.end
        return None
