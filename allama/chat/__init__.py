"""Chat: prompt formats (the model's own Jinja2 template or a named format) and the
registry that picks one for a request."""

from allama.chat.formatter import ChatFormatter, ChatFormatterResponse, Jinja2ChatFormatter, TemplateError
from allama.chat.multimodal import MTMDChatHandler
from allama.chat.multimodal_presets import (
    Llama3VisionAlpha,
    Llama3VisionAlphaChatHandler,
    Llava15ChatHandler,
    Llava16ChatHandler,
    MiniCPMv26ChatHandler,
    MoondreamChatHandler,
    NanoLlavaChatHandler,
    ObsidianChatHandler,
    Qwen25VLChatHandler,
)
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
    "Llama3VisionAlpha",
    "Llama3VisionAlphaChatHandler",
    "Llava15ChatHandler",
    "Llava16ChatHandler",
    "MTMDChatHandler",
    "MiniCPMv26ChatHandler",
    "MoondreamChatHandler",
    "NanoLlavaChatHandler",
    "ObsidianChatHandler",
    "Qwen25VLChatHandler",
    "TemplateError",
    "get_chat_completion_handler",
    "get_chat_format",
    "guess_chat_format",
    "list_chat_formats",
    "register_chat_completion_handler",
    "register_chat_format",
]
