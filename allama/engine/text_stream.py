"""Turns a sequence's token pieces into text deltas for streaming.

Deltas are valid UTF-8 (a character split across tokens waits for its last
byte; bytes that never form one, which a broken or random model can emit, are dropped,
as llama-cpp-python drops them) and never include a stop string, or the start of one that may still
complete: such text is held back until it is clear.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

from allama.marker_prefix import held_suffix


class TextStream:
    def __init__(self, stops: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self._stops = [s for s in stops if s]
        # No stop string can start in a text holding none of their first characters: such a
        # text, with nothing held back, goes out without a search
        self._first_chars = frozenset(s[0] for s in self._stops)
        self._held = ""
        self.stopped = False

    def feed(self, piece: bytes) -> str:
        """The text that can be emitted after this piece; sets `stopped` at a stop string."""
        text = self._decoder.decode(piece)
        if not self._held and self._first_chars.isdisjoint(text):
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
        text = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return text
