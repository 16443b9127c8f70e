"""Chat: prompt formats (the model's own Jinja2 template or a named format) and the
registry that picks one for a request."""

from allama.chat.formatter import ChatFormatter, ChatFormatterResponse, Jinja2ChatFormatter, TemplateError
from allama.chat.formatter_handlers import (
    ChatFormatterHandler,
    chat_formatter_to_chat_completion_handler,
    hf_autotokenizer_to_chat_completion_handler,
    hf_autotokenizer_to_chat_formatter,
    hf_tokenizer_config_to_chat_completion_handler,
    hf_tokenizer_config_to_chat_formatter,
)
from allama.chat.multimodal import MTMDChatHandler
from allama.chat.multimodal_presets import (
    Gemma4ChatHandler,
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
    LlamaChatCompletionHandler,
    LlamaChatCompletionHandlerNotFoundException,
    LlamaChatCompletionHandlerRegistry,
    get_chat_completion_handler,
    get_chat_format,
    guess_chat_format,
    guess_chat_format_from_gguf_metadata,
    list_chat_formats,
    register_chat_completion_handler,
    register_chat_format,
)

__all__ = [
    "ChatFormatter",
    "ChatFormatterHandler",
    "ChatFormatterResponse",
    "Gemma4ChatHandler",
    "Jinja2ChatFormatter",
    "LlamaChatCompletionHandler",
    "LlamaChatCompletionHandlerNotFoundException",
    "LlamaChatCompletionHandlerRegistry",
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
    "chat_formatter_to_chat_completion_handler",
    "get_chat_completion_handler",
    "get_chat_format",
    "guess_chat_format",
    "guess_chat_format_from_gguf_metadata",
    "hf_autotokenizer_to_chat_completion_handler",
    "hf_autotokenizer_to_chat_formatter",
    "hf_tokenizer_config_to_chat_completion_handler",
    "hf_tokenizer_config_to_chat_formatter",
    "list_chat_formats",
    "register_chat_completion_handler",
    "register_chat_format",
]
