"""LlamaTokenizer: a model's own tokenizer, with llama-cpp-python's interface."""

from __future__ import annotations

import os
from collections.abc import Sequence

from allama import _native


def detokenize(vocab: _native.Vocab, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
               special: bool = False) -> bytes:
    """The bytes of `tokens`; after `prev_tokens` when given, so that a leading space the
    tokenizer would strip at the start of a text is kept (streaming detokenization)."""
    if prev_tokens is None:
        return vocab.detokenize(list(tokens), False, special)
    whole = vocab.detokenize(list(prev_tokens) + list(tokens), False, special)
    return whole[len(vocab.detokenize(list(prev_tokens), False, special)):]


class LlamaTokenizer:
    """Tokenizes with a loaded model's vocabulary (or a vocab-only load of a GGUF file)."""

    def __init__(self, llama: object) -> None:
        vocab = getattr(llama, "_vocab", None)
        if vocab is None:
            inner = getattr(llama, "async_llama", None)
            vocab = getattr(inner, "_vocab", None)
        if not isinstance(vocab, _native.Vocab):
            raise TypeError("LlamaTokenizer needs an allama Llama (async or sync)")
        self._vocab = vocab

    @classmethod
    def from_ggml_file(cls, path: str | os.PathLike[str]) -> "LlamaTokenizer":
        """Loads only the vocabulary of a GGUF file."""
        params = _native.ModelParams()
        params.vocab_only = True
        tokenizer = cls.__new__(cls)
        tokenizer._vocab = _native.Vocab(_native.Model.load(os.fspath(path), params))
        return tokenizer

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        return self._vocab.tokenize(text, add_bos, special)

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        return detokenize(self._vocab, tokens, prev_tokens, special)

    def encode(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        return self.tokenize(text.encode("utf-8", errors="ignore"), add_bos=add_bos, special=special)

    def decode(self, tokens: Sequence[int]) -> str:
        return self.detokenize(tokens).decode("utf-8", errors="ignore")
