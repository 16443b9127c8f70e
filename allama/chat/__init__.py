"""Chat: prompt formats (the model's own Jinja2 template or a named format) and the
registry that picks one for a request."""

from allama.chat.formatter import ChatFormatter, ChatFormatterResponse, Jinja2ChatFormatter, TemplateError
from allama.chat.registry import get_chat_format, list_chat_formats, register_chat_format

__all__ = [
    "ChatFormatter",
    "ChatFormatterResponse",
    "Jinja2ChatFormatter",
    "TemplateError",
    "get_chat_format",
    "list_chat_formats",
    "register_chat_format",
]
