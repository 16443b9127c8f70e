"""Turning engine outputs into OpenAI legacy-completions responses and chunks."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from allama import _native
from allama.engine.request import Output, TokenLogprob


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4()}"


def token_text(vocab: _native.Vocab, token: int) -> str:
    return vocab.token_to_piece(token).decode("utf-8", errors="ignore")


@dataclass
class ChoiceText:
    """Accumulates one choice's text, tokens and logprobs."""

    index: int
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob | None] | None = None
    finish_reason: str | None = None

    def add(self, out: Output) -> None:
        self.text += out.text
        self.tokens.extend(out.tokens)
        if out.logprobs:
            self.logprobs.extend(out.logprobs)
        if out.prompt_logprobs is not None:
            self.prompt_logprobs = out.prompt_logprobs
        if out.finish_reason is not None:
            self.finish_reason = out.finish_reason


def logprobs_block(vocab: _native.Vocab, entries: list[tuple[int, TokenLogprob | None]], text_offset: int,
                   top: int) -> dict[str, Any]:
    """The legacy `logprobs` object: tokens, text_offset, token_logprobs, top_logprobs."""
    tokens: list[str] = []
    offsets: list[int] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    offset = text_offset
    for token, lp in entries:
        piece = token_text(vocab, token)
        tokens.append(piece)
        offsets.append(offset)
        offset += len(piece)
        if lp is None:
            token_logprobs.append(None)
            top_logprobs.append(None)
            continue
        token_logprobs.append(lp.logprob)
        alternatives = {token_text(vocab, t): v for t, v in list(lp.top.items())[:top]}
        alternatives[piece] = lp.logprob
        top_logprobs.append(alternatives)
    return {"tokens": tokens, "text_offset": offsets, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs}


def chunk(cid: str, created: int, model: str, index: int, text: str, finish_reason: str | None,
          logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}],
    }


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def now() -> int:
    return int(time.time())
