"""Turning engine outputs into OpenAI legacy-completions responses and chunks: CompletionJob runs
the requests of one create_completion call and shapes what they return."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from allama import _native
from allama.engine import Output, Request, Scheduler
from allama.engine.loop_handle import LoopHandle
from allama.engine.output_sink import OutputSink
from allama.engine.request import TokenLogprob
from allama.state import LlamaState

if TYPE_CHECKING:
    from allama.llama import Llama


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


class CompletionJob:
    """Runs the requests of one create_completion call and shapes what they return."""

    def __init__(self, llm: Llama, engine: Scheduler, requests: list[Request], n: int, model: str,
                 echo: bool, logprobs: int | None, suffix: str | None, prompts: list[list[int]],
                 prompt_texts: list[str], keep_state: Callable[[LlamaState], Awaitable[None]]) -> None:
        self.llm = llm
        self.keep_state = keep_state  # stores a finished sequence's state in the prompt cache
        self.engine = engine
        self.requests = requests
        self.n = n
        self.model = model
        self.echo = echo
        self.logprobs = logprobs
        self.suffix = suffix
        self.prompts = prompts
        self.prompt_texts = prompt_texts
        self.id = completion_id()
        self.created = now()

    def submit(self, stream: bool) -> None:
        """Hands the requests to the engine now (so queue errors raise at the call)."""
        self.loop = LoopHandle.current()
        self.sink = OutputSink(eager=stream)
        self.submitted: list[Request] = []
        self.remaining = sum(r.n for r in self.requests)
        try:
            for number, request in enumerate(self.requests):
                self.engine.submit(request, TaggedSink(self.sink, number), self.loop)
                self.submitted.append(request)
        except BaseException:
            self.cancel()
            raise

    def cancel(self) -> None:
        """Frees whatever is still running (safe to call more than once, from any thread)."""
        if self.remaining:
            self.remaining = 0
            for request in self.submitted:
                self.engine.cancel(request)

    async def _outputs(self) -> AsyncIterator[tuple[int, Output]]:
        """Yields (request number, output) until every choice has finished."""
        try:
            while self.remaining:
                number, out = await self.sink.get()
                if out.error is not None:
                    raise out.error
                if out.finish_reason is not None:
                    self.remaining -= 1
                if out.state is not None:
                    await self.keep_state(out.state)
                yield number, out
        finally:
            self.cancel()

    def _prompt_text(self, number: int) -> str:
        return self.prompt_texts[number]

    def _choice_index(self, number: int, index: int) -> int:
        return number * self.n + index

    async def result(self) -> dict[str, Any]:
        texts: dict[tuple[int, int], ChoiceText] = {}
        usages: dict[int, dict[str, int]] = {}
        async with aclosing(self._outputs()) as outputs:
            async for number, out in outputs:
                key = (number, out.index)
                texts.setdefault(key, ChoiceText(out.index)).add(out)
                if out.usage is not None:
                    usages[number] = out.usage
        choices = []
        for (number, index), acc in sorted(texts.items()):
            prompt_text = self._prompt_text(number) if self.echo else ""
            text = prompt_text + acc.text
            if self.suffix is not None and self.llm._vocab.fim_suf < 0:
                text += self.suffix
            choices.append({
                "text": text,
                "index": self._choice_index(number, index),
                "logprobs": self._logprobs(number, acc),
                "finish_reason": acc.finish_reason,
            })
        prompt_tokens = sum(len(p) for p in self.prompts)
        completion_tokens = sum(len(a.tokens) for a in texts.values())
        cached = sum(u.get("cached_tokens", 0) for u in usages.values())
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage(prompt_tokens, completion_tokens, cached),
        }

    def _logprobs(self, number: int, acc: ChoiceText) -> dict[str, Any] | None:
        if self.logprobs is None:
            return None
        vocab = self.llm._vocab
        entries: list[tuple[int, Any]] = []
        text_offset = 0
        if self.echo:
            prompt = self.prompts[number]
            start = 1 if prompt and prompt[0] == vocab.bos else 0
            scored = acc.prompt_logprobs or []
            for pos in range(start, len(prompt)):
                entries.append((prompt[pos], scored[pos] if pos < len(scored) and pos > start else None))
        else:
            text_offset = len(self._prompt_text(number))
        for token, lp in zip(acc.tokens, acc.logprobs):
            entries.append((token, lp))
        return logprobs_block(self.llm._token_pieces(), entries, text_offset, self.logprobs)

    async def chunks(self, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
        vocab = self.llm._token_pieces()
        offsets: dict[tuple[int, int], int] = {}
        completion_tokens = 0
        cached = 0
        if self.echo:
            for number in range(len(self.requests)):
                for index in range(self.n):
                    text = self._prompt_text(number)
                    offsets[(number, index)] = len(text)
                    yield chunk(self.id, self.created, self.model, self._choice_index(number, index), text, None)
        async with aclosing(self._outputs()) as outputs:
            async for number, out in outputs:
                completion_tokens += len(out.tokens)
                if out.usage is not None:
                    cached += out.usage.get("cached_tokens", 0)
                logprobs = None
                if self.logprobs is not None and out.logprobs:
                    key = (number, out.index)
                    start = offsets.get(key, 0)
                    logprobs = logprobs_block(vocab, list(zip(out.tokens, out.logprobs)), start, self.logprobs)
                    offsets[key] = start + len(out.text)
                if out.text or out.finish_reason is not None or logprobs is not None:
                    yield chunk(self.id, self.created, self.model, self._choice_index(number, out.index),
                                out.text, out.finish_reason, logprobs)
        if include_usage:
            prompt_tokens = sum(len(p) for p in self.prompts)
            yield {
                "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [], "usage": usage(prompt_tokens, completion_tokens, cached),
            }


class TaggedSink:
    """Routes one request's outputs into a sink shared by several requests, tagged by number."""

    __slots__ = ("sink", "number", "eager")

    def __init__(self, sink: OutputSink, number: int) -> None:
        self.sink = sink
        self.number = number
        self.eager = sink.eager  # read by the decode thread once per token

    def push(self, outputs: list[Output], final: bool = False) -> None:
        self.sink.push([(self.number, out) for out in outputs], final)
