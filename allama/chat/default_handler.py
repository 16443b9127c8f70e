"""The chat path of a Llama that no chat handler takes over: the messages rendered with its
chat formatter (media read and placed by an MTMDChatHandler), the prompt completed with
create_completion, the reply read for reasoning and tool calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

from allama import _native
from allama.chat.completion import chat_chunks, chat_response, tool_chat_chunks, tool_chat_response
from allama.chat.formatter import ChatFormatter, ChatFormatterResponse
from allama.chat.media_parts import extract_media, mark_media
from allama.chat.model_formatter import starts_with_bos
from allama.chat.multimodal import MTMDChatHandler
from allama.chat.reasoning import starts_in_thought
from allama.chat.request import ChatRequest, normalise_messages
from allama.chat.tool_calls import tool_call_grammar
from allama.engine.media_prompt import media_prompt
from allama.engine.request import MediaSpan
from allama.llama_prompts import tokenize_text
from allama.stream import AsyncStream

if TYPE_CHECKING:
    from allama.llama import Llama

_PREFILL_MARK = "\x00allama-prefill\x00"


async def default_chat_handler(*, llama: Llama, messages: Sequence[dict[str, Any]],
                               chat_formatter: ChatFormatter | None = None,
                               media_handler: MTMDChatHandler | None = None, **fields: Any) -> Any:
    """A chat completion of `messages` with the request's other `fields` (create_chat_completion's
    parameters and completion options), rendered with `chat_formatter` (default: the Llama's);
    `media_handler` reads the images and audio of the messages and evaluates them."""
    request = ChatRequest.read(fields)
    media: list[bytes] = []
    formatter = None
    if media_handler is not None:
        formatter = media_handler.formatter(llama)
        if formatter is None:
            messages, media = await extract_media(messages, _native.default_media_marker(), media_handler.source)
        else:  # the handler's template places the media itself
            messages, media = await mark_media(messages, _native.default_media_marker(), media_handler.source)
            messages = media_handler.with_default_system(normalise_messages(messages, keep_parts=True))
    if formatter is None:
        messages = normalise_messages(messages)
        formatter = chat_formatter or llama.chat_formatter()
    offered = request.tools if request.tools and request.tool_choice != "none" else None
    rendered = _render(formatter, list(messages), offered, request)
    in_thought = starts_in_thought(rendered.prompt)
    # BOS (and whatever else the vocabulary adds) unless the rendered text starts with it:
    # a template that writes special tokens may still leave BOS to the tokenizer, as
    # llama-server and llama-mtmd-cli assume
    add_special = not rendered.added_special or not starts_with_bos(llama._vocab, rendered.prompt)
    spans: Sequence[MediaSpan] = ()
    if media:
        assert media_handler is not None
        context = await media_handler.media_context(llama)
        bitmaps = await media_handler.bitmaps(llama, media)
        # preprocessing (resizing images, audio spectrograms) takes a while: off the loop
        chunks = await anyio.to_thread.run_sync(context.tokenize, rendered.prompt, bitmaps, add_special, True)
        prompt, spans = media_prompt(chunks, context)
    else:
        prompt = await tokenize_text(llama, rendered.prompt.encode("utf-8"), add_special, True)
    stops = [rendered.stop] if isinstance(rendered.stop, str) else list(rendered.stop or [])
    options = request.options
    if request.grammar is not None:
        options["grammar"] = request.grammar
    tool_choice = request.tool_choice
    if offered is not None and (tool_choice == "required" or isinstance(tool_choice, dict)):
        name = tool_choice["function"]["name"] if isinstance(tool_choice, dict) else None
        template = getattr(formatter, "template", "") or ""
        options["grammar"] = tool_call_grammar(offered, name, "<tool_call>" in template, request.parallel)
    completion = await llama.create_completion(
        prompt, max_tokens=request.max_tokens, stop=stops + request.stops, logprobs=request.logprobs,
        stopping_criteria=options.pop("stopping_criteria", None) or rendered.stopping_criteria, media=spans,
        **options)
    if offered is not None:
        # Tool calls are read out of the reply; their markup never reaches content.
        if isinstance(completion, AsyncStream):
            return AsyncStream(tool_chat_chunks(completion), on_abandon=completion.abandon)
        return tool_chat_response(completion)
    if isinstance(completion, AsyncStream):
        return AsyncStream(chat_chunks(completion, in_thought), on_abandon=completion.abandon)
    return chat_response(completion, in_thought)


def _render(formatter: ChatFormatter, messages: list[dict[str, Any]], offered: list[dict[str, Any]] | None,
            request: ChatRequest) -> ChatFormatterResponse:
    """The prompt of the conversation. A final assistant message without tool calls is continued
    (prefill) rather than answered: rendered with a marker, the prompt is cut there and the real
    text put back."""
    template_vars = dict(request.template_vars)
    last = messages[-1]
    if last["role"] != "assistant" or last.get("tool_calls"):
        return formatter(messages=messages, tools=offered, tool_choice=request.tool_choice, **template_vars)
    marked = messages[:-1] + [{**last, "content": _PREFILL_MARK}]
    template_vars["add_generation_prompt"] = False
    rendered = formatter(messages=marked, tools=offered, tool_choice=request.tool_choice, **template_vars)
    cut = rendered.prompt.find(_PREFILL_MARK)
    if cut < 0:
        raise ValueError("this chat format cannot continue a final assistant message")
    rendered.prompt = rendered.prompt[:cut] + (last.get("content") or "")
    return rendered

