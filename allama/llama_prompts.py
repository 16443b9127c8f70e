"""A completion's prompts as token lists: text or bytes (tokenized; a long text in a worker
thread), token ids (checked), a list of either, a fill-in-the-middle suffix; and each prompt's
text, for echo."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from allama.arguments import int_list
from allama.engine.request import MediaSpan
from allama.token_ids import checked_token_ids

if TYPE_CHECKING:
    from allama.llama import Llama

_PROMPT_TYPES = "prompt must be a string, bytes, a list of token ids, or a list of those"

# Texts at least this long are tokenized in a worker thread, off the event loop (the native
# tokenizer releases the GIL): about 1.5 ms of tokenizing, against a thread hop of 0.1 ms.
LONG_TEXT_BYTES = 16 * 1024


def prompt_token_lists(llm: Llama, prompt: Any, suffix: str | None) -> list[list[int]]:
    """One token list per prompt (a string, bytes or ids is one prompt; a list of those, several)."""
    if isinstance(prompt, (str, bytes)):
        return [prompt_tokens(llm, prompt, suffix)]
    if not isinstance(prompt, (list, tuple, np.ndarray)):
        raise TypeError(f"{_PROMPT_TYPES}, not {type(prompt).__name__}")
    if len(prompt) == 0:
        raise ValueError("the prompt is empty")
    ids = int_list(prompt)
    if ids is not None:
        return [prompt_tokens(llm, ids, suffix)]
    lists = []
    for p in prompt:
        if isinstance(p, (str, bytes)):
            lists.append(prompt_tokens(llm, p, suffix))
        elif isinstance(p, (list, tuple, np.ndarray)) and (ids := int_list(p)) is not None:
            lists.append(prompt_tokens(llm, ids, suffix))
        else:
            raise TypeError(f"{_PROMPT_TYPES}; this one holds a {type(p).__name__}")
    return lists


async def tokenize_text(llm: Llama, text: bytes, add_bos: bool, special: bool) -> list[int]:
    """llm.tokenize(), in a worker thread for a long text: a prompt of 100 KB takes about 10
    ms, which the event loop's other streams would otherwise wait."""
    if len(text) < LONG_TEXT_BYTES:
        return llm.tokenize(text, add_bos, special)
    return await anyio.to_thread.run_sync(llm.tokenize, text, add_bos, special)


def media_prompt_tokens(llm: Llama, prompt: Any, media: Sequence[MediaSpan], echo: bool,
                        suffix: str | None) -> list[int]:
    """A prompt of token ids whose `media` spans hold placeholder ids: its text tokens checked."""
    if not (isinstance(prompt, list) and all(isinstance(t, (int, np.integer)) for t in prompt)):
        raise ValueError("a prompt with media must be one list of token ids")
    if echo or suffix is not None:
        raise ValueError("echo and suffix are not available for prompts with media")
    inside = {p for span in media for p in range(span.start, span.end)}
    prompt_tokens(llm, [int(t) for i, t in enumerate(prompt) if i not in inside], None)
    return [int(t) for t in prompt]


def prompt_tokens(llm: Llama, prompt: str | bytes | list[int], suffix: str | None) -> list[int]:
    """One prompt's tokens: BOS added to text (an empty text is BOS alone), ids checked; with a
    `suffix`, the fill-in-the-middle layout."""
    vocab = llm._vocab
    if isinstance(prompt, list):
        tokens = checked_token_ids(prompt, vocab.n_tokens)
    else:
        text = prompt.encode("utf-8") if isinstance(prompt, str) else prompt
        tokens = llm.tokenize(text, True, suffix is None) if text else ([vocab.bos] if vocab.bos >= 0 else [])
    if suffix is not None:
        tokens = _fill_in_the_middle(llm, tokens, suffix)
    if not tokens:
        raise ValueError("the prompt is empty")
    return tokens


def _fill_in_the_middle(llm: Llama, prefix: list[int], suffix: str) -> list[int]:
    v = llm._vocab
    if min(v.fim_pre, v.fim_suf, v.fim_mid) < 0:
        raise ValueError("suffix (fill-in-the-middle) needs a model with FIM tokens; this vocabulary has none")
    if prefix and prefix[0] == v.bos:
        prefix = prefix[1:]
    suffix_tokens = llm.tokenize(suffix.encode("utf-8"), False, False)
    head = [v.bos] if v.add_bos and v.bos >= 0 else []
    if llm.spm_infill:
        return head + [v.fim_suf] + suffix_tokens + [v.fim_pre] + prefix + [v.fim_mid]
    return head + [v.fim_pre] + prefix + [v.fim_suf] + suffix_tokens + [v.fim_mid]


def prompt_texts(llm: Llama, prompt: Any, token_lists: list[list[int]]) -> list[str]:
    """Each prompt as text, for echo: the caller's string itself, else the detokenized ids."""
    items = [prompt] if isinstance(prompt, (str, bytes)) or (
        prompt and all(isinstance(t, (int, np.integer)) for t in prompt)) else list(prompt)
    texts = []
    for item, tokens in zip(items, token_lists):
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, bytes):
            texts.append(item.decode("utf-8", errors="ignore"))
        else:
            custom = llm._custom_tokenizer
            text = llm._vocab.detokenize(tokens, True, False) if custom is None else custom.detokenize(tokens)
            texts.append(text.decode("utf-8", errors="ignore"))
    return texts
