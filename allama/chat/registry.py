"""Named chat formats: `register_chat_format`, `get_chat_format`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from allama.chat.formatter import ChatFormatter

_FORMATS: dict[str, ChatFormatter] = {}


def register_chat_format(name: str) -> Callable[[ChatFormatter], ChatFormatter]:
    """Decorator: registers a formatter (messages -> ChatFormatterResponse) under `name`."""

    def decorator(formatter: ChatFormatter) -> ChatFormatter:
        _FORMATS[name] = formatter
        return formatter

    return decorator


def get_chat_format(name: str) -> ChatFormatter:
    _load_builtins()
    try:
        return _FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown chat format {name!r}; known: {', '.join(sorted(_FORMATS))}") from None


def list_chat_formats() -> list[str]:
    _load_builtins()
    return sorted(_FORMATS)


def _load_builtins() -> Any:
    from allama.chat import formats  # noqa: F401  (registers on import)
