"""One assistant turn written by several completions that continue a growing prompt.

Function-calling handlers (chatml-function-calling, functionary) steer a model step by
step: a grammar picks "a message, or which function", another forces the arguments to the
function's schema, and so on. Each step is a completion of `Turn.prompt`; a handler is an
async generator of turn events (`Content`, `CallStart`, `Arguments`, `Finish`), which
`turn_response` and `turn_chunks` shape as an OpenAI chat completion or its chunk stream.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from allama.chat.completion import chat_logprobs
from allama.llama_prompts import tokenize_text
from allama.marker_prefix import held_suffix
from allama.stream import AsyncStream


@dataclass
class Content:
    text: str
    logprobs: dict[str, Any] | None = None  # the chat-shaped logprobs of this text


@dataclass
class CallStart:
    name: str


@dataclass
class Arguments:
    text: str


@dataclass
class Finish:
    reason: str  # "stop" or "length"; "tool_calls" is inferred when calls were made


TurnEvent = Content | CallStart | Arguments | Finish

MAX_CALLS = 16  # tool calls in one turn, at most


@dataclass
class StepResult:
    text: str = ""  # what the step wrote, up to (not including) the stop string that ended it
    stop: str | None = None  # that stop string, or None (end of generation, grammar done, length)
    finish_reason: str | None = None


@dataclass
class Turn:
    """The prompt, the request's sampling options and the token budget of one turn."""

    llama: Any
    prompt: str
    options: dict[str, Any]  # create_completion keyword arguments shared by every step
    max_tokens: int | None = None  # for the whole turn
    logprobs: int | None = None
    model: str | None = None
    add_bos: bool = True  # False when the prompt already starts with the BOS text (a template put it there)
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4()}")
    created: int = field(default_factory=lambda: int(time.time()))
    prompt_tokens: int | None = None
    completion_tokens: int = 0
    last: StepResult = field(default_factory=StepResult)

    @property
    def exhausted(self) -> bool:
        return self.max_tokens is not None and self.completion_tokens >= self.max_tokens

    async def run(self, stop: Sequence[str] = (), grammar: str | None = None, logprobs: bool = False,
                  limit: int | None = None, **overrides: Any) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        """One step: continues the prompt, yielding (text, chat logprobs) as it comes. A stop
        string ends the step and is never yielded (nor the start of one that may complete);
        which one matched is in `self.last.stop` afterwards. `limit` caps this step's tokens
        below the turn's budget. The prompt is not extended: the handler appends what it keeps."""
        stops = [s for s in stop if s]
        result = self.last = StepResult()
        tokens = await tokenize_text(self.llama, self.prompt.encode("utf-8"), self.add_bos, True)
        if self.prompt_tokens is None:
            self.prompt_tokens = len(tokens)  # (a first prompt that is too long raises ContextOverflowError)
        elif len(tokens) >= self.llama.n_ctx():
            result.finish_reason = "length"  # the turn has filled the context
            return
        options = {**self.options, **overrides}
        caller_criteria = options.pop("stopping_criteria", None)
        criteria = _StopStrings(self.llama, len(tokens), stops, caller_criteria) if stops else caller_criteria
        budget = None if self.max_tokens is None else max(1, self.max_tokens - self.completion_tokens)
        if limit is not None:
            budget = limit if budget is None else min(budget, limit)
        stream = await self.llama.create_completion(
            tokens, max_tokens=budget, stream=True, grammar=grammar, stopping_criteria=criteria,
            logprobs=self.logprobs if logprobs else None, stream_options={"include_usage": True}, **options)
        text = ""
        sent = 0
        async with stream:
            async for chunk in stream:
                if not chunk["choices"]:
                    self.completion_tokens += chunk["usage"]["completion_tokens"]
                    continue
                choice = chunk["choices"][0]
                text += choice["text"]
                if choice["finish_reason"] is not None:
                    result.finish_reason = choice["finish_reason"]
                # (read the criterion only at the end: it runs on the decode thread, ahead of the chunks)
                finished = result.finish_reason is not None
                matched = criteria.matched if finished and isinstance(criteria, _StopStrings) else None
                if matched is not None:
                    text = text[: text.find(matched)] if matched in text else text
                    result.stop = matched
                    keep = len(text)
                elif result.finish_reason is not None:
                    keep = len(text)
                else:
                    keep = len(text) - held_suffix(text, stops)
                piece = text[sent:keep]
                lp = chat_logprobs(choice["logprobs"]) if logprobs else None
                if piece or lp is not None:
                    yield piece, lp
                sent = max(sent, keep)
        result.text = text

    async def complete(self, stop: Sequence[str] = (), grammar: str | None = None, limit: int | None = None,
                       **overrides: Any) -> StepResult:
        """One step run to its end (nothing streamed)."""
        async with aclosing(self.run(stop, grammar, limit=limit, **overrides)) as pieces:
            async for _ in pieces:
                pass
        return self.last

    def usage(self) -> dict[str, int]:
        prompt = self.prompt_tokens or 0
        return {"prompt_tokens": prompt, "completion_tokens": self.completion_tokens,
                "total_tokens": prompt + self.completion_tokens}


class _StopStrings:
    """A stopping criterion that ends a step at any of `stops` and remembers which one.
    It runs on the decode thread, once per generated token."""

    def __init__(self, llama: Any, n_prompt: int, stops: list[str],
                 also: Callable[[np.ndarray, np.ndarray], bool] | None) -> None:
        self._llama = llama
        self._n_prompt = n_prompt
        self._stops = stops
        self._window = max(len(s.encode("utf-8")) for s in stops) + 8
        self._also = also
        self.matched: str | None = None

    def __call__(self, ids: np.ndarray, logits: np.ndarray) -> bool:
        generated = ids[self._n_prompt:]
        tail = self._llama.detokenize(generated[-self._window:].tolist()).decode("utf-8", "ignore")
        for stop in self._stops:
            if stop in tail:
                self.matched = stop
                return True
        return bool(self._also is not None and self._also(ids, logits))


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


async def turn_response(turn: Turn, events: AsyncIterator[TurnEvent], legacy_functions: bool) -> dict[str, Any]:
    """The chat completion a turn's events make. With the legacy `functions` request the
    message carries `function_call` (the first call) beside `tool_calls`."""
    content: list[str] = []
    logprobs: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    reason = "stop"
    async with aclosing(events) as stream:
        async for event in stream:
            if isinstance(event, Content):
                content.append(event.text)
                if event.logprobs is not None:
                    logprobs.extend(event.logprobs["content"])
            elif isinstance(event, CallStart):
                calls.append({"id": call_id(), "type": "function", "function": {"name": event.name, "arguments": ""}})
            elif isinstance(event, Arguments):
                calls[-1]["function"]["arguments"] += event.text
            else:
                reason = event.reason
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) if content or not calls else None}
    if calls:
        message["tool_calls"] = calls
        if legacy_functions:
            message["function_call"] = dict(calls[0]["function"])
        if reason == "stop":
            reason = "tool_calls"
    return {
        "id": turn.id, "object": "chat.completion", "created": turn.created, "model": turn.model,
        "choices": [{"index": 0, "message": message,
                     "logprobs": {"content": logprobs, "refusal": None} if turn.logprobs is not None else None,
                     "finish_reason": reason}],
        "usage": turn.usage(),
    }


async def _chunks(turn: Turn, events: AsyncIterator[TurnEvent], include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None,
              logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"id": turn.id, "object": "chat.completion.chunk", "created": turn.created, "model": turn.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]}

    yield chunk({"role": "assistant", "content": ""})
    index = -1
    async with aclosing(events) as stream:
        async for event in stream:
            if isinstance(event, Content):
                yield chunk({"content": event.text}, logprobs=event.logprobs)
            elif isinstance(event, CallStart):
                index += 1
                yield chunk({"tool_calls": [{"index": index, "id": call_id(), "type": "function",
                                             "function": {"name": event.name, "arguments": ""}}]})
            elif isinstance(event, Arguments):
                if event.text:
                    yield chunk({"tool_calls": [{"index": index, "function": {"arguments": event.text}}]})
            else:
                reason = "tool_calls" if index >= 0 and event.reason == "stop" else event.reason
                yield chunk({}, reason)
    if include_usage:
        yield {"id": turn.id, "object": "chat.completion.chunk", "created": turn.created, "model": turn.model,
               "choices": [], "usage": turn.usage()}


def turn_chunks(turn: Turn, events: AsyncIterator[TurnEvent], include_usage: bool) -> AsyncStream[dict[str, Any]]:
    """The turn's events as an OpenAI chat chunk stream: the role, content deltas, tool_calls
    deltas (id, type and name, then argument fragments), and the finish reason."""
    return AsyncStream(_chunks(turn, events, include_usage))

