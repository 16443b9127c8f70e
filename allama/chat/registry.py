"""Named chat formats and chat completion handlers: `register_chat_format`,
`get_chat_format`, `register_chat_completion_handler`, `get_chat_completion_handler`.

Every chat format is also a chat completion handler under its name (as in
llama-cpp-python): `get_chat_completion_handler("chatml")` renders with the chatml format.
The tables start with the built-in formats (`allama.chat.formats`) and handlers
(`allama.chat.handlers`); registrations add to them or replace entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from allama.chat.formats import BUILTIN_CHAT_FORMATS
from allama.chat.formatter import ChatFormatter, ChatFormatterHandler
from allama.chat.handlers import BUILTIN_CHAT_HANDLERS

_FORMATS: dict[str, ChatFormatter] = dict(BUILTIN_CHAT_FORMATS)
_HANDLERS: dict[str, Any] = dict(BUILTIN_CHAT_HANDLERS)
_FORMAT_HANDLERS: dict[str, Any] = {}  # the handler made for each format, kept once made


class LlamaChatCompletionHandler(Protocol):
    """A chat completion handler: called with keywords only, `llama` and the request's fields
    (`messages`, `tools`, `stream`, sampling options, ...), it returns the response dict, or
    with stream=True the chunks (an AsyncStream, or an iterator from a blocking handler).
    Coroutine functions run on the event loop; plain functions run in a worker thread with a
    blocking view of the Llama (see `allama.chat.handler_call`)."""

    def __call__(self, *, llama: Any, messages: list[dict[str, Any]], **kwargs: Any) -> Any: ...


class LlamaChatCompletionHandlerNotFoundException(ValueError):
    """No chat completion handler (or chat format) is registered under the name asked for."""

# sha256 of the GGUF chat templates llama-cpp-python 0.3.36 recognises as a named format
# (its CHATML, MISTRAL_INSTRUCT, MIXTRAL_INSTRUCT and LLAMA3_INSTRUCT templates; the texts
# are in tests/chat/goldens/known_templates.json, written by the goldens script).
_KNOWN_TEMPLATES = {
    "153280e3ff55d19da1398bdb3914ee2a51b80429bfaedde11d7d216c39db80f3": "chatml",
    "7e995b379ec01747807246483647cd99030abf331653f1119e16d7ac041a3495": "mistral-instruct",
    "26a59556925c987317ce5291811ba3b7f32ec4c647c400c6cc7e3a9993007ba7": "mistral-instruct",
    "ba03a121d097859c7b5b9cd03af99aafe95275210d2876f642ad9929a150f122": "llama-3",
}


def _registrar(table: dict[str, Any], name: str) -> Callable[[Any], Any]:
    def decorator(item: Any) -> Any:
        table[name] = item
        return item

    return decorator


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(table))}") from None


def register_chat_format(name: str) -> Callable[[ChatFormatter], ChatFormatter]:
    """Decorator: registers a formatter (messages -> ChatFormatterResponse) under `name`."""
    return _registrar(_FORMATS, name)


def get_chat_format(name: str) -> ChatFormatter:
    return _lookup(_FORMATS, name, "chat format")


def guess_chat_format(template: str | None) -> str | None:
    """The named format for a GGUF chat template llama-cpp-python knows by heart, else None."""
    if not template:
        return None
    return _KNOWN_TEMPLATES.get(hashlib.sha256(template.encode("utf-8")).hexdigest())


def guess_chat_format_from_gguf_metadata(metadata: Mapping[str, str]) -> str | None:
    """The named format for the `tokenizer.chat_template` of GGUF metadata, when it is one
    llama-cpp-python knows by heart; else None."""
    return guess_chat_format(metadata.get("tokenizer.chat_template"))


def register_chat_completion_handler(name: str) -> Callable[[Any], Any]:
    """Decorator: registers a chat completion handler (see LlamaChatCompletionHandler)."""
    return _registrar(_HANDLERS, name)


def get_chat_completion_handler(name: str) -> LlamaChatCompletionHandler:
    """The handler registered as `name`, or the handler of the chat format `name`."""
    return LlamaChatCompletionHandlerRegistry().get_chat_completion_handler_by_name(name)


class LlamaChatCompletionHandlerRegistry:
    """llama-cpp-python's registry interface over allama's one table of handlers (every
    instance sees the same handlers)."""

    _chat_handlers = _HANDLERS

    def register_chat_completion_handler(self, name: str, chat_handler: LlamaChatCompletionHandler,
                                         overwrite: bool = False) -> None:
        if not overwrite and name in _HANDLERS:
            raise ValueError(f"a chat completion handler named {name!r} is registered; pass overwrite=True to replace it")
        _HANDLERS[name] = chat_handler

    def unregister_chat_handler(self, name: str) -> None:
        if name not in _HANDLERS:
            raise ValueError(f"no chat completion handler is registered as {name!r}")
        del _HANDLERS[name]

    def get_chat_completion_handler_by_name(self, name: str) -> LlamaChatCompletionHandler:
        if name in _HANDLERS:
            return _HANDLERS[name]
        if name in _FORMATS:
            cached = _FORMAT_HANDLERS.get(name)
            if cached is None or cached.formatter is not _FORMATS[name]:
                cached = _FORMAT_HANDLERS[name] = ChatFormatterHandler(_FORMATS[name])
            return cached
        known = ", ".join(sorted(set(_HANDLERS) | set(_FORMATS)))
        raise LlamaChatCompletionHandlerNotFoundException(f"unknown chat completion handler {name!r}; known: {known}")


def chat_format_handler(name: str) -> Any:
    """The handler registered as `name` when `name` is not a prompt format (so that
    `chat_format="functionary-v2"` selects that handler, as in llama-cpp-python), else None."""
    return _HANDLERS.get(name) if name not in _FORMATS else None


def list_chat_formats() -> list[str]:
    return sorted(_FORMATS)

