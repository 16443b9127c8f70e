"""A sequence id that a session owns between its turns."""

from __future__ import annotations


class SessionSlot:
    """One session's sequence, as the decode thread tracks it.

    Between turns the sequence's KV holds exactly `tokens` (positions 0..len-1); it is
    never evicted for prefix reuse, and other requests may share its prefix (seq_cp).
    Only the decode thread changes a slot; the event loop only reads it.
    """

    __slots__ = ("seq_id", "tokens", "busy", "closed", "lora")

    def __init__(self, seq_id: int) -> None:
        self.seq_id = seq_id
        self.tokens: list[int] = []
        self.busy = False     # a turn is admitted and running
        self.closed = False
        self.lora: tuple = ()  # the LoRA adapters its KV was computed with
