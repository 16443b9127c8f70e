"""Shaping completions as OpenAI chat completions (responses and stream chunks)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from allama.chat.reasoning import ReasoningSplitter, split_reasoning
from allama.chat.tool_calls import ToolCallSplitter, parse_tool_calls


def chat_logprobs(block: dict[str, Any] | None) -> dict[str, Any] | None:
    """The chat `logprobs` object from a legacy completions `logprobs` block. Each position's
    `top_logprobs` lists the n most likely tokens, most likely first, the chosen one among them
    as OpenAI does (plus the chosen one when sampling took a token outside the top n, as
    llama-cpp-python does)."""
    if block is None:
        return None
    content = []
    for token, logprob, top in zip(block["tokens"], block["token_logprobs"], block["top_logprobs"]):
        ranked = sorted((top or {}).items(), key=lambda item: -item[1])
        alternatives = [{"token": t, "logprob": v, "bytes": list(t.encode("utf-8"))} for t, v in ranked]
        content.append({"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8")),
                        "top_logprobs": alternatives})
    return {"content": content, "refusal": None}


def _chunk(base: dict[str, Any], index: int, delta: dict[str, Any], finish_reason: str | None = None,
           logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**base, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                 "finish_reason": finish_reason}]}


def _base(chunk: dict[str, Any]) -> dict[str, Any]:
    return {"id": "chat" + chunk["id"], "object": "chat.completion.chunk", "created": chunk["created"],
            "model": chunk["model"]}


ROLE_DELTA = {"role": "assistant", "content": ""}


def _message(text: str, in_thought: bool) -> dict[str, Any]:
    reasoning, content = split_reasoning(text, in_thought)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return message


def chat_response(completion: dict[str, Any], in_thought: bool = False) -> dict[str, Any]:
    return {
        "id": "chat" + completion["id"],
        "object": "chat.completion",
        "created": completion["created"],
        "model": completion["model"],
        "choices": [
            {
                "index": choice["index"],
                "message": _message(choice["text"], in_thought),
                "logprobs": chat_logprobs(choice["logprobs"]),
                "finish_reason": choice["finish_reason"],
            }
            for choice in completion["choices"]
        ],
        "usage": completion["usage"],
    }


async def _chat_chunks(chunks: AsyncIterator[dict[str, Any]], new_state: Callable[[], Any],
                       deltas: Callable[[Any, dict[str, Any]], Iterator[tuple[dict[str, Any], Any, Any]]]
                       ) -> AsyncIterator[dict[str, Any]]:
    """Completion chunks as OpenAI chat chunks: per choice, a role delta first, then what
    `deltas(state, choice)` makes of each completion chunk ((delta, finish_reason, logprobs)
    triples); a usage chunk (no choices) passes through."""
    states: dict[int, Any] = {}
    async for chunk in chunks:
        base = _base(chunk)
        if not chunk["choices"]:
            yield {**base, "choices": [], "usage": chunk.get("usage")}
            continue
        choice = chunk["choices"][0]
        index = choice["index"]
        if index not in states:
            states[index] = new_state()
            yield _chunk(base, index, dict(ROLE_DELTA))
        for delta, finish_reason, logprobs in deltas(states[index], choice):
            yield _chunk(base, index, delta, finish_reason, logprobs)


def chat_chunks(chunks: AsyncIterator[dict[str, Any]], in_thought: bool = False) -> AsyncIterator[dict[str, Any]]:
    """Content (and reasoning_content) deltas, then an empty delta with the finish reason."""

    def deltas(splitter: ReasoningSplitter, choice: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Any, Any]]:
        parts = splitter.feed(choice["text"])
        if choice["finish_reason"] is not None:
            parts += splitter.flush()
        logprobs = chat_logprobs(choice["logprobs"])
        if logprobs is not None and not parts:
            parts = [("content", "")]
        for field, text in parts:
            yield {field: text}, None, logprobs
            logprobs = None
        if choice["finish_reason"] is not None:
            yield {}, choice["finish_reason"], None

    return _chat_chunks(chunks, lambda: ReasoningSplitter(in_thought), deltas)


def _tool_message(text: str) -> tuple[dict[str, Any], bool]:
    content, calls = parse_tool_calls(text)
    if not calls:
        return {"role": "assistant", "content": text}, False
    return {"role": "assistant", "content": content or None,
            "tool_calls": [c.as_openai() for c in calls]}, True


def tool_chat_response(completion: dict[str, Any]) -> dict[str, Any]:
    """chat_response, with tool calls read out of each choice's text."""
    response = chat_response(completion)
    for choice in response["choices"]:
        message, called = _tool_message(choice["message"]["content"])
        choice["message"] = message
        if called:
            choice["finish_reason"] = "tool_calls"
    return response


def tool_chat_chunks(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """A stream when tools are offered: content streams as usual until tool-call markup
    starts; the calls are then read at the end of the reply and sent as tool_calls deltas
    (id, type and name once per index, then the arguments). Markup never reaches content."""
    def deltas(splitter: ToolCallSplitter, choice: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Any, Any]]:
        content = splitter.feed(choice["text"])
        calls: list[Any] = []
        if choice["finish_reason"] is not None:
            rest, calls = splitter.finish()
            content += rest
        if content:
            yield {"content": content}, None, None
        for k, call in enumerate(c.as_openai() for c in calls):
            head = {"index": k, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""}}
            yield {"tool_calls": [head]}, None, None
            yield {"tool_calls": [{"index": k, "function": {"arguments": call["function"]["arguments"]}}]}, None, None
        if choice["finish_reason"] is not None:
            yield {}, "tool_calls" if calls else choice["finish_reason"], None

    return _chat_chunks(chunks, ToolCallSplitter, deltas)
