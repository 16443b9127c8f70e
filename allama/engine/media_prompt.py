"""A prompt tokenized by mtmd (text and media chunks) as the engine takes it: token ids,
with placeholder ids where media go, and the media spans that fill them."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from allama.engine.request import MediaSpan

_anonymous = itertools.count(1)


def placeholder_id(media_id: str) -> int:
    """A negative id for a medium: equal for equal media (their SHA-256 id), so prompts with
    the same image share a prefix and prompts with different images never do."""
    # (int32, as token ids travel to logits processors; hashed ids in [-2^30, -1])
    if media_id:
        digest = hashlib.sha256(media_id.encode()).digest()
        return -1 - int.from_bytes(digest[:4], "little") % (1 << 30)
    return -(1 << 30) - 1 - next(_anonymous) % ((1 << 30) - 1)  # no identity: not shared


def media_prompt(chunks: Any, context: Any) -> tuple[list[int], list[MediaSpan]]:
    """(prompt token ids, media spans) for `chunks`, a _native.MediaChunks from `context`."""
    tokens: list[int] = []
    spans: list[MediaSpan] = []
    for index in range(len(chunks)):
        chunk = chunks[index]
        if chunk.type == "text":
            tokens.extend(chunk.tokens)
        else:
            spans.append(MediaSpan(len(tokens), chunk.n_tokens, context, chunks, index))
            tokens.extend([placeholder_id(chunk.id)] * chunk.n_tokens)
    return tokens, spans
