"""Sessions: sequence ids that keep a conversation's KV between its turns, and the KV of the
last finished completion (what `Llama.save_state()` saves). Runs on the decode thread."""

from __future__ import annotations

from allama import _native
from allama.engine.media_positions import position
from allama.engine.prefix_cache import PrefixCache
from allama.engine.sequence import Sequence
from allama.engine.session_slot import SessionSlot
from allama.errors import AllamaError, DecodeError, EngineClosedError
from allama.state import LlamaState


class SessionTable:
    """The open sessions, each owning a sequence id taken from the prefix cache's spare ones."""

    def __init__(self, ctx: _native.Context, prefix_cache: PrefixCache, limit: int) -> None:
        self.ctx = ctx
        self.prefix_cache = prefix_cache
        self.limit = limit  # at most this many open at once (n_keep: sessions use the kept ids)
        self.slots: dict[int, SessionSlot] = {}  # seq id -> its session
        # the last completion outside a session whose KV was kept: seq id, the tokens it holds
        self.last_finished: tuple[int, list[int]] | None = None

    def __len__(self) -> int:
        return len(self.slots)

    def open(self) -> SessionSlot:
        if len(self.slots) >= self.limit:
            raise AllamaError(f"at most {self.limit} sessions can be open at once (n_keep={self.limit}): "
                              "close one, or load the model with a larger n_keep")
        slot = SessionSlot(self.prefix_cache.take_id())
        self.slots[slot.seq_id] = slot
        return slot

    def close(self, slot: SessionSlot) -> None:
        """Frees the session's sequence (its running turn must have ended); waiting turns fail
        when they come up for admission."""
        if slot.closed:
            return
        slot.closed = True
        del self.slots[slot.seq_id]
        self.prefix_cache.free(slot.seq_id)
        slot.tokens = []

    def close_all(self) -> None:
        """At shutdown: every session is closed; the context goes with the engine."""
        for slot in self.slots.values():
            slot.closed = True

    def save(self, slot: SessionSlot, seed: int) -> LlamaState:
        """The session's tokens and its sequence's KV bytes."""
        self._check_idle(slot)
        return LlamaState.of_sequence(list(slot.tokens), self.ctx.seq_state_get(slot.seq_id), seed)

    def load(self, slot: SessionSlot, state: LlamaState) -> None:
        """Replaces the session's history with a saved state; ValueError if it does not fit."""
        self._check_idle(slot)
        self.ctx.seq_rm(slot.seq_id)
        slot.tokens = []
        self.prefix_cache.load(slot.seq_id, state)
        slot.tokens = state.tokens
        slot.lora = ()  # states are computed and restored without adapters

    def settle(self, slot: SessionSlot, seq: Sequence, error: BaseException | None) -> None:
        """A turn ended: the session keeps the KV of the tokens evaluated so far, so what it records
        matches its sequence even after a cancellation midway; a failed decode clears it."""
        slot.busy = False
        if slot.closed:
            return
        if isinstance(error, DecodeError):
            self.ctx.seq_rm(slot.seq_id)
            slot.tokens = []
        else:
            self.ctx.seq_rm(slot.seq_id, position(seq.shifts, seq.n_past), -1)
            slot.tokens = seq.tokens[:seq.n_past]
            slot.lora = seq.request.lora

    def save_last_completion(self, seed: int) -> LlamaState | None:
        """The tokens and KV of the last finished completion while its kept sequence still holds
        them; None if there was none since forget; AllamaError if its KV is gone."""
        if self.last_finished is None:
            return None
        seq_id, tokens = self.last_finished
        if not tokens or self.prefix_cache.kept.get(seq_id) is not tokens:
            raise AllamaError("the KV of the last completion is no longer held (dropped for room, or reused by "
                              "a later request); keep a conversation's state with llm.session() instead")
        return LlamaState.of_sequence(list(tokens), self.ctx.seq_state_get(seq_id), seed)

    def _check_idle(self, slot: SessionSlot) -> None:
        if slot.closed:
            raise EngineClosedError("the session is closed")
        if slot.busy:
            raise AllamaError("the session is running a turn; wait for it to finish")
