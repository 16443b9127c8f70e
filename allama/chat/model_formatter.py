"""The chat formatter a Llama renders with when no chat handler takes over: its `chat_format`,
else the named format llama-cpp-python recognises in the GGUF's template, else that template
itself (Jinja2), else llama-2."""

from __future__ import annotations

import logging

from allama import _native
from allama.chat.formatter import ChatFormatter, Jinja2ChatFormatter
from allama.chat.registry import get_chat_format, guess_chat_format

log = logging.getLogger("allama.chat")


def model_chat_formatter(chat_format: str | None, model: _native.Model, vocab: _native.Vocab) -> ChatFormatter:
    if chat_format is not None:
        return get_chat_format(chat_format)
    template = model.chat_template()
    known = guess_chat_format(template)
    if known is not None:
        return get_chat_format(known)
    if template:
        return template_formatter(vocab, template)
    # A base model's GGUF often has no template: say so once, or its chat answers (often
    # nothing at all, the model ending a turn it was never trained on) come with no hint
    log.warning("the model has no chat template and no chat_format was given: chat uses the llama-2 "
                "format; pass chat_format (e.g. 'chatml', 'gemma') if the model expects another")
    return get_chat_format("llama-2")


def template_formatter(vocab: _native.Vocab, template: str, add_generation_prompt: bool = True,
                       writes_special: bool = True) -> Jinja2ChatFormatter:
    """A Jinja2ChatFormatter for `template` with the vocabulary's BOS/EOS texts and end tokens."""
    stop_ids = [t for t in (vocab.eos, vocab.eot) if t >= 0]
    return Jinja2ChatFormatter(template, eos_token=special_text(vocab, vocab.eos),
                               bos_token=special_text(vocab, vocab.bos), add_generation_prompt=add_generation_prompt,
                               stop_token_ids=stop_ids, writes_special=writes_special)


def special_text(vocab: _native.Vocab, token: int) -> str:
    """A special token's text (BOS's "<s>", say), or '' for a token the vocabulary lacks (-1)."""
    return vocab.token_to_piece(token, special=True).decode("utf-8", "ignore") if token >= 0 else ""


def starts_with_bos(vocab: _native.Vocab, text: str) -> bool:
    """Whether `text` starts with the text of the vocabulary's BOS token."""
    bos = special_text(vocab, vocab.bos)
    return bool(bos) and text.startswith(bos)
