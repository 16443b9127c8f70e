"""Chat: prompt formats (the model's own Jinja2 template or a named format) and the
registry that picks one for a request."""

from allama.chat.formatter import ChatFormatter, ChatFormatterResponse, Jinja2ChatFormatter, TemplateError
from allama.chat.registry import (
    get_chat_completion_handler,
    get_chat_format,
    guess_chat_format,
    list_chat_formats,
    register_chat_completion_handler,
    register_chat_format,
)

__all__ = [
    "ChatFormatter",
    "ChatFormatterResponse",
    "Jinja2ChatFormatter",
    "TemplateError",
    "get_chat_completion_handler",
    "get_chat_format",
    "guess_chat_format",
    "list_chat_formats",
    "register_chat_completion_handler",
    "register_chat_format",
]
