"""Where a media prompt's tokens sit: the checks on its media spans, the cuts a shared
prefix may make, and KV positions, which lag token indices after M-RoPE media."""

from __future__ import annotations

from allama.engine.request import Request


def check_media(request: Request) -> None:
    """ValueError unless the spans are in order inside the prompt, text follows the last one,
    and a medium takes as many positions as tokens or its projector uses M-RoPE."""
    end = 0
    for span in request.media:
        if span.start < end or span.length < 1 or span.end > len(request.prompt):
            raise ValueError("media spans must be in order, non-empty and inside the prompt")
        if span.chunks[span.index].n_pos != span.length and not span.context.uses_mrope:
            raise ValueError("a medium's positions differ from its tokens, but its projector does not use M-RoPE")
        end = span.end
    if end >= len(request.prompt):
        raise ValueError("a prompt must have text after its last medium (the generation prompt)")
    if request.prompt_logprobs:
        raise ValueError("prompt logprobs (echo with logprobs) are not available for prompts with media")


def before_media(request: Request, n: int) -> int:
    """`n`, or the start of the medium that position n would cut."""
    for span in request.media:
        if span.start < n < span.end:
            return span.start
    return n


def next_media_start(request: Request, position: int) -> int:
    """The start of the first medium at or after `position` (the prompt's end if none)."""
    return next((span.start for span in request.media if span.start >= position), len(request.prompt))


def position_shifts(request: Request) -> list[tuple[int, int]] | None:
    """(end of a medium, how far positions after it lag token indices) for M-RoPE media,
    whose positions (max of the image's width and height in patches) are fewer than their
    tokens; None when positions are token indices, as for every other prompt."""
    shifts, lag = [], 0
    for span in request.media:
        n_pos = span.chunks[span.index].n_pos
        if n_pos != span.length:
            lag += span.length - n_pos
        if lag:
            shifts.append((span.end, lag))
    return shifts or None


def position(shifts: list[tuple[int, int]] | None, index: int) -> int:
    """The KV position of token `index` of a prompt with these shifts (a cut at a medium's
    start included)."""
    if shifts is None:
        return index
    lag = 0
    for end, total in shifts:
        if end > index:
            break
        lag = total
    return index - lag
