"""llama-cpp-python's functions that make chat completion handlers of formatters, and formatters
of Hugging Face tokenizers (`chat_formatter_to_chat_completion_handler`, `hf_*`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from allama.chat.formatter import (ChatFormatter, ChatFormatterHandler, ChatFormatterResponse, TemplateError,
                                   make_environment)


def chat_formatter_to_chat_completion_handler(chat_formatter: ChatFormatter) -> ChatFormatterHandler:
    """The chat completion handler that renders prompts with `chat_formatter`."""
    return ChatFormatterHandler(chat_formatter)


def hf_autotokenizer_to_chat_formatter(pretrained_model_name_or_path: str | os.PathLike[str]) -> ChatFormatter:
    """A formatter rendering with a Hugging Face tokenizer's chat template (needs
    `transformers`; the tokenizer is loaded now). The generation prompt is added unless
    `add_generation_prompt=False` is passed when formatting."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path)
    tokenizer.use_default_system_prompt = False

    def format_autotokenizer(*, messages: Sequence[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        kwargs.setdefault("add_generation_prompt", True)
        prompt = tokenizer.apply_chat_template(list(messages), tokenize=False, **kwargs)
        if not isinstance(prompt, str):
            raise TemplateError(f"the tokenizer's chat template gave {type(prompt).__name__}, not text")
        return ChatFormatterResponse(prompt=prompt, stop=tokenizer.eos_token, added_special=True)

    return format_autotokenizer


def hf_autotokenizer_to_chat_completion_handler(
        pretrained_model_name_or_path: str | os.PathLike[str]) -> ChatFormatterHandler:
    return ChatFormatterHandler(hf_autotokenizer_to_chat_formatter(pretrained_model_name_or_path))


def _token_text(config: Mapping[str, Any], key: str) -> str:
    """A special token's text in a tokenizer_config.json: a string, an added-token dict, or
    '' where the model has none (Qwen's bos_token is null)."""
    value = config.get(key)
    if isinstance(value, Mapping):
        value = value.get("content")
    if value is not None and not isinstance(value, str):
        raise ValueError(f"the tokenizer config's {key} is not text: {value!r}")
    return value or ""


def hf_tokenizer_config_to_chat_formatter(tokenizer_config: Mapping[str, Any],
                                          add_generation_prompt: bool = True) -> ChatFormatter:
    """A formatter for the `chat_template` of a Hugging Face tokenizer_config.json (a dict).

    As llama-cpp-python does, the generation prompt is an empty assistant message appended
    to the conversation; completions stop at `eos_token` or `bos_token`.
    """
    if not isinstance(tokenizer_config, Mapping):
        raise TypeError(f"tokenizer_config must be a dict, not {type(tokenizer_config).__name__}")
    template = tokenizer_config.get("chat_template")
    if not isinstance(template, str):
        raise ValueError("the tokenizer config has no chat_template text")
    bos_token, eos_token = _token_text(tokenizer_config, "bos_token"), _token_text(tokenizer_config, "eos_token")
    compiled = make_environment().from_string(template)

    def format_tokenizer_config(*, messages: Sequence[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
        turns = list(messages)
        if kwargs.pop("add_generation_prompt", add_generation_prompt):
            turns.append({"role": "assistant", "content": ""})
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        prompt = compiled.render(messages=turns, bos_token=bos_token, eos_token=eos_token, **kwargs)
        return ChatFormatterResponse(prompt=prompt, stop=[t for t in (eos_token, bos_token) if t], added_special=True)

    return format_tokenizer_config


def hf_tokenizer_config_to_chat_completion_handler(tokenizer_config: Mapping[str, Any],
                                                   add_generation_prompt: bool = True) -> ChatFormatterHandler:
    return ChatFormatterHandler(hf_tokenizer_config_to_chat_formatter(tokenizer_config, add_generation_prompt))
