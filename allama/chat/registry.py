"""Named chat formats and chat completion handlers: `register_chat_format`,
`get_chat_format`, `register_chat_completion_handler`, `get_chat_completion_handler`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from allama.chat.formatter import ChatFormatter

_FORMATS: dict[str, ChatFormatter] = {}
_HANDLERS: dict[str, Any] = {}

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
    _load_builtins()
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
    import hashlib

    return _KNOWN_TEMPLATES.get(hashlib.sha256(template.encode("utf-8")).hexdigest())


def register_chat_completion_handler(name: str) -> Callable[[Any], Any]:
    """Decorator: registers a chat completion handler, an async callable
    `handler(llama=..., messages=..., **request) -> response dict or AsyncStream`."""
    return _registrar(_HANDLERS, name)


def get_chat_completion_handler(name: str) -> Any:
    return _lookup(_HANDLERS, name, "chat completion handler")


def chat_format_handler(name: str) -> Any:
    """The handler registered as `name` when `name` is not a prompt format (so that
    `chat_format="functionary-v2"` selects that handler, as in llama-cpp-python), else None."""
    _load_builtins()
    return _HANDLERS.get(name) if name not in _FORMATS else None


def list_chat_formats() -> list[str]:
    _load_builtins()
    return sorted(_FORMATS)


def _load_builtins() -> Any:
    from allama.chat import formats, handlers  # noqa: F401  (register on import)
