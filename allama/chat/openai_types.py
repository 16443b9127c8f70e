"""Chat completions as the `openai` package's types (create_chat_completion_openai_v1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from allama.stream import AsyncStream


def openai_chat_types() -> tuple[Any, Any]:
    """(ChatCompletion, ChatCompletionChunk) of the `openai` package; ImportError without it."""
    try:
        from openai.types.chat import ChatCompletion, ChatCompletionChunk  # an optional dependency
    except ImportError as exc:
        raise ImportError("create_chat_completion_openai_v1 needs the openai package") from exc
    return ChatCompletion, ChatCompletionChunk


def as_openai_types(result: Any, types: tuple[Any, Any]) -> Any:
    """A chat completion response as a ChatCompletion, or a stream of its chunks as one of
    ChatCompletionChunk."""
    completion, chunk = types
    if isinstance(result, AsyncStream):
        return AsyncStream(_validated(result, chunk), on_abandon=result.abandon)
    return completion.model_validate(result)


async def _validated(stream: AsyncStream[dict[str, Any]], model: Any) -> AsyncIterator[Any]:
    async with stream:
        async for chunk in stream:
            yield model.model_validate(chunk)
