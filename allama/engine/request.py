"""What a caller asks the engine for, and what the engine sends back."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from allama import _native

LogitsProcessor = Callable[[np.ndarray, np.ndarray], np.ndarray]
StoppingCriteria = Callable[[np.ndarray, np.ndarray], bool]

_request_ids = itertools.count(1)


@dataclass(frozen=True)
class MediaSpan:
    """An image or audio clip in a prompt: prompt positions [start, start + length) hold
    placeholder ids (negative, the same for one medium: different media never share a
    prefix), and `context.eval_media_chunk(ctx, chunks, index, ...)` fills them."""

    start: int
    length: int
    context: Any  # _native.MediaContext
    chunks: Any   # _native.MediaChunks
    index: int

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(eq=False)
class Request:
    """One prompt to continue, as `n` independent choices.

    The sampler chains are built by the caller (so that a bad grammar fails in the
    caller's frame); the engine owns them once the request is submitted.
    """

    prompt: list[int]
    chains: list[_native.SamplerChain]
    max_tokens: int | None = None       # None: until the context window ends
    stop: Sequence[str] = ()
    logprobs: int | None = None          # top alternatives per generated token; 0: only the chosen one
    prompt_logprobs: bool = False        # also score the prompt tokens (echo + logprobs)
    ignore_eos: bool = False
    priority: int = 0                    # higher is admitted first
    timeout: float | None = None         # seconds from submission
    logits_processor: LogitsProcessor | None = None
    stopping_criteria: StoppingCriteria | None = None
    media: Sequence[MediaSpan] = ()      # in prompt order; text must follow the last one
    session: Any = None                  # a SessionSlot: continue that session's sequence
    restore: Any = None                  # a LlamaState to start from if it beats the engine's own prefixes
    keep_state: bool = False             # hand back the finished sequence's LlamaState (Output.state)
    lora: tuple[tuple[Any, float], ...] = ()  # (LoraAdapter, scale) pairs decoded with; () none
    id: int = field(default_factory=lambda: next(_request_ids))
    submitted_at: float = field(default_factory=time.monotonic)

    @property
    def n(self) -> int:
        return len(self.chains)


@dataclass(slots=True)
class TokenLogprob:
    """The chosen token's log-probability and the top alternatives (token id -> logprob)."""

    token: int
    logprob: float
    top: dict[int, float]


@dataclass(slots=True)
class Output:
    """What one step produced for one choice of a request.

    `text` is valid UTF-8 and never holds a partly matched stop string. The last
    Output of a choice has `finish_reason` ("stop", "length") or `error` set.
    """

    index: int
    tokens: list[int]
    text: str
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None
    finish_reason: str | None = None
    error: BaseException | None = None
    usage: dict[str, Any] | None = None
    embeddings: Any = None  # embedding requests: the input's vector (or token vectors)
    state: Any = None       # the finished sequence's LlamaState, when the request asked (keep_state)
