"""Turns a sequence's token pieces into text deltas for streaming.

Deltas are valid UTF-8 (a character split across tokens waits for its last
byte; bytes that never form one, which a broken or random model can emit, are dropped,
as llama-cpp-python drops them) and never include a stop string, or the start of one that may still
complete: such text is held back until it is clear.
"""

from __future__ import annotations

from codecs import utf_8_decode
from collections.abc import Sequence

from allama.marker_prefix import held_suffix


class TextStream:
    __slots__ = ("_pending", "_stops", "_first_chars", "_held", "stopped")

    def __init__(self, stops: Sequence[str] = ()) -> None:
        # the bytes of a character whose last byte has not come yet (what codecs' incremental
        # decoder keeps, without its Python-level wrapper: this runs once per generated token)
        self._pending = b""
        self._stops = [s for s in stops if s]
        # No stop string can start in a text holding none of their first characters: such a
        # text, with nothing held back, goes out without a search
        self._first_chars = frozenset(s[0] for s in self._stops)
        self._held = ""
        self.stopped = False

    def feed(self, piece: bytes) -> str:
        """The text that can be emitted after this piece; sets `stopped` at a stop string."""
        data = self._pending + piece if self._pending else piece
        text, used = utf_8_decode(data, "ignore", False)
        self._pending = data[used:] if used < len(data) else b""
        if not self._held and (not self._stops or self._first_chars.isdisjoint(text)):
            return text
        buf = self._held + text
        cut = -1
        for stop in self._stops:
            i = buf.find(stop)
            if i != -1 and (cut == -1 or i < cut):
                cut = i
        if cut != -1:
            self.stopped = True
            self._held = ""
            return buf[:cut]
        hold = held_suffix(buf, self._stops)
        self._held = buf[len(buf) - hold:] if hold else ""
        return buf[: len(buf) - hold]

    def flush(self) -> str:
        """Whatever is held back, at the end of the sequence (no stop string matched)."""
        text = self._held + utf_8_decode(self._pending, "ignore", True)[0]
        self._held = ""
        self._pending = b""
        return text
