"""Tokenizers with llama-cpp-python's interface: the model's own (LlamaTokenizer) and a
Hugging Face one (LlamaHFTokenizer) that `Llama(tokenizer=...)` can use instead."""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import Any

from allama import _native

_HF_EXTRA_HINT = "pip install 'allama[hf]'"


class BaseLlamaTokenizer(abc.ABC):
    """What `Llama(tokenizer=...)` needs: text bytes to token ids and back."""

    @abc.abstractmethod
    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        """Token ids of UTF-8 `text`; `add_bos` adds the start token, `special` parses special-token text."""

    @abc.abstractmethod
    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        """The bytes of `tokens`; when `prev_tokens` is given, the bytes they add after those
        (so that pieces detokenized one by one join up to the whole text)."""


class LlamaTokenizer(BaseLlamaTokenizer):
    """Tokenizes with a loaded model's vocabulary (or a vocab-only load of a GGUF file)."""

    def __init__(self, llama: Any) -> None:
        vocab = getattr(llama, "_vocab", None)
        if vocab is None:
            inner = getattr(llama, "async_llama", None)
            vocab = getattr(inner, "_vocab", None)
        if not isinstance(vocab, _native.Vocab):
            raise TypeError("LlamaTokenizer needs an allama Llama (async or sync)")
        self._vocab = vocab
        self._space_prefix: bool | None = None

    @classmethod
    def from_ggml_file(cls, path: str | os.PathLike[str]) -> "LlamaTokenizer":
        """Loads only the vocabulary of a GGUF file."""
        params = _native.ModelParams()
        params.vocab_only = True
        tokenizer = cls.__new__(cls)
        tokenizer._vocab = _native.Vocab(_native.Model.load(os.fspath(path), params))
        tokenizer._space_prefix = None
        return tokenizer

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        return self._vocab.tokenize(text, add_bos, special)

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        """The tokens' pieces joined, as llama-cpp-python does: a word keeps its leading space,
        except the space a SentencePiece vocabulary put before the first word after BOS."""
        piece = self._vocab.token_to_piece
        text = b"".join([piece(t, 0, special) for t in tokens])
        if not text.startswith(b" "):
            return text
        context = list(prev_tokens) if prev_tokens else []
        first = context[0] if context else (tokens[0] if len(tokens) else -1)
        if first != self._vocab.bos or first < 0 or any(piece(t, 0, special) for t in context):
            return text
        if self._space_prefix is None:
            self._space_prefix = _adds_space_prefix(self._vocab)
        return text[1:] if self._space_prefix else text

    def encode(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        return self.tokenize(text.encode("utf-8", errors="ignore"), add_bos=add_bos, special=special)

    def decode(self, tokens: Sequence[int]) -> str:
        return self.detokenize(tokens).decode("utf-8", errors="ignore")


def _adds_space_prefix(vocab: _native.Vocab) -> bool:
    """Whether the vocabulary puts a space before a text's first word (SentencePiece's
    add_space_prefix): then a text's first piece after BOS starts with a space it never had."""
    probe = vocab.tokenize(b"a", False, False)
    return bool(probe) and vocab.token_to_piece(probe[0]).startswith(b" ")


# A UTF-8 character has at most 4 bytes: one cut off at the end of a text is in its last 3 tokens at most.
_CUT_CHARACTER_TOKENS = 3
# Previous tokens decoded to place new ones; more only when these start inside a character.
_CONTEXT_TOKENS = 16


class LlamaHFTokenizer(BaseLlamaTokenizer):
    """A Hugging Face `transformers` tokenizer behind llama-cpp-python's tokenizer interface.

    Detokenizing with `prev_tokens` gives the text the tokens add after those: pieces
    detokenized one at a time join up to the whole text, leading spaces and characters
    split across tokens included (a partial character waits for the token that ends it).
    Only the last few of `prev_tokens` are decoded, so streaming costs O(1) per token.
    """

    def __init__(self, hf_tokenizer: Any) -> None:
        self.hf_tokenizer = hf_tokenizer

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str]) -> "LlamaHFTokenizer":
        """Loads `transformers.AutoTokenizer.from_pretrained(pretrained_model_name_or_path)`."""
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise ImportError(f"LlamaHFTokenizer needs the transformers package: {_HF_EXTRA_HINT}") from exc
        return cls(AutoTokenizer.from_pretrained(os.fspath(pretrained_model_name_or_path)))

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        """`add_bos` adds the tokenizer's special tokens (its BOS); `special=False` reads
        special-token text such as '<s>' as plain text."""
        string = text.decode("utf-8", errors="ignore") if isinstance(text, (bytes, bytearray)) else str(text)
        options = {} if special else {"split_special_tokens": True}
        return list(self.hf_tokenizer.encode(string, add_special_tokens=add_bos, **options))

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        if prev_tokens is None:
            return self._decode(list(tokens), special).encode("utf-8")
        context, before = self._context(list(prev_tokens), special)
        whole = self._settled(context + list(tokens), special)
        if not whole.startswith(before):  # a decoder that rewrote earlier text: send what differs
            before = os.path.commonprefix([before, whole])
        return whole[len(before):].encode("utf-8")

    def _decode(self, tokens: list[int], special: bool) -> str:
        # No clean-up of spaces before punctuation: it would rewrite text already sent.
        return self.hf_tokenizer.decode(tokens, skip_special_tokens=not special,
                                        clean_up_tokenization_spaces=False) if tokens else ""

    def _context(self, prev: list[int], special: bool) -> tuple[list[int], str]:
        """The end of `prev` that new tokens are read after, and its settled text: its last few
        tokens, from a point where their text starts cleanly (not inside a character)."""
        size = _CONTEXT_TOKENS
        while size < len(prev):
            window = prev[-size:]
            text = self._settled(window, special)
            if text and not text.startswith("\ufffd"):
                return window, text
            size *= 2
        return prev, self._settled(prev, special)

    def _settled(self, tokens: list[int], special: bool) -> str:
        """The text of `tokens` that can be sent: a character cut off at the end (which the
        decoder shows as U+FFFD, and byte-fallback decoders show by garbling the run of
        bytes it ends) is left out until the tokens that complete it arrive."""
        text = ""
        for cut in range(len(tokens), max(len(tokens) - _CUT_CHARACTER_TOKENS, 0) - 1, -1):
            text = self._decode(tokens[:cut], special)
            if not text.endswith("\ufffd"):
                return text
        return text.rstrip("\ufffd")


class TokenPieces:
    """A tokenizer seen as a vocabulary's `token_to_piece`: one token's text, for logprobs."""

    __slots__ = ("_tokenizer",)

    def __init__(self, tokenizer: BaseLlamaTokenizer) -> None:
        self._tokenizer = tokenizer

    def token_to_piece(self, token: int, lstrip: int = 0, special: bool = False) -> bytes:
        return self._tokenizer.detokenize([token], special=special)
