"""Prefix reuse: which KV a new sequence starts from, and the sequence ids that hold it.

A finished sequence's KV is kept under its id (least recently used dropped first) for a
later prompt with the same prefix. A new request starts from the longest prefix on offer:
its session's own KV, a kept sequence (taken over), a running or idle session's sequence
(its cells shared), or a cached state (restored). A request whose prefix another request is
evaluating right now follows it, and copies that KV once it is there instead of computing
it twice.
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from collections.abc import Iterable

from allama import _native
from allama.engine.media_positions import before_media, position
from allama.engine.sequence import FOLLOWING, GENERATING, PREFILLING, Sequence, Submission
from allama.engine.session_slot import SessionSlot
from allama.errors import AllamaError
from allama.state import LlamaState
from allama.token_prefix import common_prefix

log = logging.getLogger("allama.engine")

# Where a new sequence's prefix comes from; at equal length the cheaper source wins.
_SOURCES = ("own", "kept", "share", "restore")


class PrefixCache:
    """The decode thread's sequence ids, the kept sequences, and the copying between them."""

    def __init__(self, ctx: _native.Context, n_ids: int, *, kv_unified: bool,
                 recurrent: bool, n_swa: int, min_shared_prefix: int) -> None:
        self.ctx = ctx
        self.kv_unified = kv_unified
        # A recurrent (or hybrid) memory holds one state per sequence, after its last token: it
        # cannot be cut back to a shorter prefix, and seq_cp copies the whole state.
        self.recurrent = recurrent
        # Sliding-window layers let llama.cpp reuse the cells of positions that left a sequence's
        # window: a prefix of it is usable only while the window before its end is still held.
        self.n_swa = n_swa
        self.min_shared_prefix = min_shared_prefix  # tokens worth waiting for another request's prefill
        self._free = list(range(n_ids))  # a heap: the smallest free id is taken first
        self.kept: OrderedDict[int, list[int]] = OrderedDict()  # seq id -> tokens its KV holds
        self._kept_lora: dict[int, tuple] = {}  # the LoRA adapters a kept sequence's KV was computed with
        self.tokens_reused = 0    # prompt tokens whose KV came from another sequence
        self.tokens_restored = 0  # prompt tokens whose KV came from a cached state

    # --- sequence ids ------------------------------------------------------

    @property
    def spare_ids(self) -> int:
        """Ids a new request can take: free ones and kept ones (whose KV is then dropped)."""
        return len(self._free) + len(self.kept)

    def take_id(self) -> int:
        """A free id, else the least recently used kept one (its KV dropped)."""
        if not self._free:
            seq_id, _ = self.kept.popitem(last=False)
            self.ctx.seq_rm(seq_id)
            return seq_id
        return heapq.heappop(self._free)

    def free(self, seq_id: int) -> None:
        """Drops the sequence's KV and gives its id back."""
        self.ctx.seq_rm(seq_id)
        heapq.heappush(self._free, seq_id)

    def keep(self, seq_id: int, tokens: list[int], lora: tuple) -> None:
        """Keeps a finished sequence's KV (which holds exactly `tokens`) for prefix reuse."""
        self.kept[seq_id] = tokens
        self._kept_lora[seq_id] = lora
        self.kept.move_to_end(seq_id)

    def drop_oldest(self) -> bool:
        """Drops the least recently used kept sequence; False if none is kept."""
        if not self.kept:
            return False
        seq_id, _ = self.kept.popitem(last=False)
        self.free(seq_id)
        return True

    # --- what a prefix is worth ----------------------------------------------

    def reusable(self, shared: int, held: int) -> int:
        """How many of the `shared` leading prompt tokens a sequence holding `held` tokens can give:
        all of them, except from a recurrent memory, which gives its whole state or nothing."""
        return shared if not self.recurrent or shared == held else 0

    def window_held(self, seq_id: int, pos: int) -> bool:
        """Whether the sequence still holds every position that a token at `pos` attends to (always,
        without sliding windows; llama.cpp keeps a sequence's positions contiguous, so its
        smallest one tells)."""
        if self.n_swa <= 0 or pos <= 0:
            return True
        return 0 <= self.ctx.seq_pos_min(seq_id) <= max(0, pos - self.n_swa + 1)

    def held_prefix(self, prompt: list[int], held: Iterable[list[int]]) -> int:
        """How many leading prompt tokens the longest of `held` (token lists whose KV is held,
        besides the kept ones) can give."""
        limit = len(prompt) - 1
        return max((self.reusable(common_prefix(prompt, tokens, limit), len(tokens))
                    for tokens in (*self.kept.values(), *held)), default=0)

    # --- starting a sequence -------------------------------------------------

    def start(self, submission: Submission, active: list[Sequence], sessions: Iterable[SessionSlot]) -> Sequence:
        """The request's first sequence, holding the longest prefix on offer (see the module
        docstring); FOLLOWING another sequence whose prefill will give it more."""
        request = submission.request
        prompt = request.prompt
        limit = len(prompt) - 1  # at least one token must be evaluated to get logits
        slot: SessionSlot | None = request.session
        lora = request.lora  # KV computed with other LoRA adapters is not this request's
        seq = Sequence(request, 0, submission.sink, submission.loop, -1)
        shifts = seq.shifts
        offers = dict.fromkeys(_SOURCES, 0)
        kept_id = live_id = -1
        future: Sequence | None = None
        future_len = 0

        def usable(seq_id: int, n: int) -> int:  # n, cut before a medium, or 0 where its window is gone
            if request.media:
                n = self.reusable(before_media(request, n), n)
            return n if n and self.window_held(seq_id, position(shifts, n)) else 0

        def offer(tokens: list[int], held: int, bound: int = limit) -> int:
            return self.reusable(common_prefix(prompt, tokens, bound), held)

        if not request.prompt_logprobs:  # scoring the prompt needs every position evaluated
            if slot is not None and slot.lora == lora:
                offers["own"] = usable(slot.seq_id, offer(slot.tokens, len(slot.tokens)))
            for seq_id, tokens in self.kept.items():
                if self._kept_lora.get(seq_id, ()) == lora:
                    n = usable(seq_id, offer(tokens, len(tokens)))
                    if n > offers["kept"]:
                        kept_id, offers["kept"] = seq_id, n
            for other in active:
                if other.phase == FOLLOWING or other.request.lora != lora:
                    continue
                n = usable(other.seq_id, offer(other.tokens, other.n_past, min(limit, other.n_past)))
                if n > offers["share"]:
                    live_id, offers["share"] = other.seq_id, n
                if other.phase == PREFILLING:
                    # (a recurrent leader passes any point inside its prompt mid-step: only the state
                    # after its whole prompt can be copied)
                    n = offer(other.tokens, other.n_prompt, min(limit, other.n_prompt))
                    if request.media:
                        n = self.reusable(before_media(request, n), n)
                    if n > future_len:
                        future, future_len = other, n
            for other_slot in sessions:
                if other_slot is not slot and not other_slot.busy and other_slot.lora == lora:
                    n = usable(other_slot.seq_id, offer(other_slot.tokens, len(other_slot.tokens)))
                    if n > offers["share"]:
                        live_id, offers["share"] = other_slot.seq_id, n
            if request.restore is not None and not lora:
                n = offer(request.restore.tokens, len(request.restore.tokens))
                offers["restore"] = self.reusable(before_media(request, n), n) if request.media else n

        source = _best(offers)
        seq_id = -1
        if source == "restore" and offers["restore"] > 0:
            target = slot.seq_id if slot is not None else self.take_id()
            if slot is not None:
                self.ctx.seq_rm(target)
            if self.restore(target, request.restore, offers["restore"]):
                seq_id = target
                self.tokens_restored += offers["restore"]
            else:  # fall back to the next best offer (the session's own KV is gone now)
                if slot is None:
                    heapq.heappush(self._free, target)
                offers["restore"] = offers["own"] = 0
                if kept_id not in self.kept:  # taking an id may have evicted it
                    offers["kept"] = 0
                source = _best(offers)
        length = offers[source]
        end = position(shifts, length)  # where the reused KV ends
        if seq_id < 0:
            if slot is not None:
                seq_id = slot.seq_id
                self.ctx.seq_rm(seq_id, end if source == "own" and length else 0, -1)
            elif source == "kept" and length:
                seq_id = kept_id
                del self.kept[seq_id]
                self.ctx.seq_rm(seq_id, end, -1)
            else:
                seq_id = self.take_id()
            if length and source == "share":
                self.copy_prefix(live_id, seq_id, end)
            elif length and source == "kept" and slot is not None:
                self.copy_prefix(kept_id, seq_id, end)
                self.kept.move_to_end(kept_id)
        seq.seq_id = seq_id
        seq.n_past = seq.reused = length
        self.tokens_reused += length
        if future is not None and future_len - length >= self.min_shared_prefix:
            # Another request is evaluating the same prefix right now: wait for it and copy its
            # KV instead of computing the prefix twice.
            self.follow(seq, future, future_len)
        return seq

    def follow(self, seq: Sequence, leader: Sequence, target: int) -> None:
        """The sequence waits until the leader holds `target` tokens, then copies their KV."""
        seq.phase = FOLLOWING
        seq.leader = leader
        seq.target = target
        leader.followers.append(seq)

    def activate_followers(self, active: list[Sequence], rows: list[tuple[Sequence, int]]) -> None:
        """After a step: followers whose leader reached their target copy its KV. A follower with
        the leader's prompt (n > 1) whose leader finished its prompt this step samples from the
        leader's row too: it joins `rows`."""
        leaders = [s for s in active if s.followers]
        if not leaders:  # most steps
            return
        completed_row = {id(seq): row for seq, row in rows}
        for leader in leaders:
            for follower in [f for f in leader.followers if leader.n_past >= f.target]:
                leader.followers.remove(follower)
                follower.leader = None
                follower.phase = PREFILLING
                if not self.window_held(leader.seq_id, position(follower.shifts, follower.target)):
                    continue  # the leader's window before the target is gone: evaluate it
                gained = follower.target - follower.n_past
                self.ctx.seq_rm(follower.seq_id)  # its own shorter prefix, if any, is replaced
                self.copy_prefix(leader.seq_id, follower.seq_id, position(follower.shifts, follower.target))
                follower.n_past = follower.target
                if not follower.share_row:
                    follower.reused += gained
                    self.tokens_reused += gained
                    continue
                row = completed_row.get(id(leader))
                if row is None:  # evaluate the last prompt token itself to get its logits
                    follower.n_past = max(0, follower.target - 1)
                    self.ctx.seq_rm(follower.seq_id, position(follower.shifts, follower.n_past), -1)
                else:
                    follower.phase = GENERATING
                    if leader.prompt_logprobs is not None:  # the same prompt, scored once
                        follower.prompt_logprobs = list(leader.prompt_logprobs)
                    rows.append((follower, row))

    def release_followers(self, leader: Sequence) -> None:
        """The leader stops (it ended or was parked): its followers copy what it holds of their
        prefix and evaluate the rest themselves."""
        for follower in leader.followers:
            shared = self.reusable(min(leader.n_past, follower.target, len(follower.tokens) - 1), leader.n_past)
            if shared > follower.n_past and self.window_held(leader.seq_id, position(follower.shifts, shared)):
                self.ctx.seq_rm(follower.seq_id)
                self.copy_prefix(leader.seq_id, follower.seq_id, position(follower.shifts, shared))
                gained = shared - follower.n_past
                follower.reused += gained
                self.tokens_reused += gained
                follower.n_past = shared
            follower.leader = None
            follower.phase = PREFILLING
        leader.followers = []

    # --- copying KV ------------------------------------------------------------

    def copy_prefix(self, src: int, dst: int, end: int) -> None:
        """Gives the empty sequence `dst` the KV of src's positions [0, end). In a unified cache
        the cells are shared; with a stream per sequence llama.cpp copies whole streams only,
        so the whole of src is copied and the tail beyond `end` dropped (a recurrent state is
        only ever shared whole)."""
        if self.kv_unified:
            self.ctx.seq_cp(src, dst, 0, end)
            return
        self.ctx.seq_cp(src, dst, -1, -1)
        if not self.recurrent:
            self.ctx.seq_rm(dst, end, -1)

    def restore(self, seq_id: int, state: LlamaState, length: int) -> bool:
        """Loads a cached state into the empty sequence and keeps its first `length` tokens;
        False (sequence left empty) if llama.cpp refuses it (a warning logged) or the state lacks
        the sliding window before `length`."""
        try:
            self.load(seq_id, state)
        except (ValueError, AllamaError) as exc:
            log.warning("a cached prompt state could not be restored, evaluating the prompt instead: %s", exc)
            return False
        if not self.window_held(seq_id, length):
            self.ctx.seq_rm(seq_id)
            return False
        self.ctx.seq_rm(seq_id, length, -1)
        return True

    def load(self, seq_id: int, state: LlamaState) -> None:
        """Fills the empty sequence with a state's KV; ValueError (sequence left empty) if it does
        not fit this context or does not hold exactly the state's tokens. Kept sequences are
        dropped, least recently used first, while the KV cache has no room for it."""
        while True:
            try:
                self.ctx.seq_state_set(state.llama_state, seq_id)
                break
            except ValueError as exc:
                self.ctx.seq_rm(seq_id)
                if "available cells" not in str(exc) or not self.drop_oldest():  # llama.cpp's "no room"
                    raise
        n = state.n_tokens
        if self.ctx.seq_pos_max(seq_id) != n - 1 or (n > 0 and self.ctx.seq_pos_min(seq_id) != 0):
            self.ctx.seq_rm(seq_id)
            raise ValueError(f"the state's KV does not hold its {n} tokens")


def _best(offers: dict[str, int]) -> str:
    """The source offering the most tokens; the first in _SOURCES at equal length."""
    return max(_SOURCES, key=lambda k: (offers[k], -_SOURCES.index(k)))
