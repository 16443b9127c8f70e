"""Which handler completes a chat request: the Llama's `chat_handler`, else the handler its
`chat_format` names (functionary-v2, say), else the default handler (allama.chat.default_handler),
which also serves an MTMDChatHandler's requests and a chat format used as a handler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from allama import arguments
from allama.chat.default_handler import default_chat_handler
from allama.chat.handler_call import call_chat_handler
from allama.chat.multimodal import MTMDChatHandler
from allama.chat.registry import chat_format_handler, get_chat_completion_handler
from allama.chat.request import check_messages

if TYPE_CHECKING:
    from allama.llama import Llama


async def complete_chat(llama: Llama, request: dict[str, Any]) -> Any:
    """The response to `request` (create_chat_completion's arguments by name, its extra
    keyword arguments among them), or with stream=True an AsyncStream of chunks."""
    messages = request.pop("messages")
    check_messages(messages)
    arguments.stop_strings(request["stop"])
    arguments.optional_mapping("chat_template_kwargs", request["chat_template_kwargs"])
    if request["max_completion_tokens"] is not None:
        arguments.whole("max_tokens (max_completion_tokens)", request["max_completion_tokens"], None, None)
    # set by a ChatFormatterHandler (a chat format used as a handler): the default path with that format
    chosen_formatter = request.pop("_chat_formatter", None)
    handler = llama.chat_handler if chosen_formatter is None else None
    media_handler = handler if isinstance(handler, MTMDChatHandler) else None
    if media_handler is not None:
        handler = None  # the default path, with the media read and evaluated
    if handler is None and llama.chat_format is not None and chosen_formatter is None:
        handler = chat_format_handler(llama.chat_format)
    if handler is None:
        return await default_chat_handler(llama=llama, messages=messages, chat_formatter=chosen_formatter,
                                          media_handler=media_handler, **request)
    if isinstance(handler, str):
        handler = get_chat_completion_handler(handler)
    return await call_chat_handler(handler, llama=llama, messages=messages, **request)
