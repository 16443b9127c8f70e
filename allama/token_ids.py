"""Token ids given by a caller (or a custom tokenizer), checked before they reach llama.cpp,
which indexes its tables with them unchecked."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from allama.arguments import int_list, is_int


def first_outside(tokens: Sequence[int], n_vocab: int) -> int | None:
    """The first id of `tokens` outside [0, n_vocab), or None when all are in the vocabulary."""
    if not tokens or (min(tokens) >= 0 and max(tokens) < n_vocab):  # the usual case, at C speed
        return None
    return next(t for t in tokens if not 0 <= t < n_vocab)


def checked_token_ids(tokens: Any, n_vocab: int, name: str = "the token ids") -> list[int]:
    """`tokens` as a list of ints, each an id of a vocabulary of `n_vocab` tokens; TypeError or
    ValueError naming `name` otherwise."""
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Iterable):
        raise TypeError(f"{name} must be a list of token ids (ints), not {type(tokens).__name__}")
    if not isinstance(tokens, (list, tuple, np.ndarray)):
        tokens = list(tokens)  # read once: the errors below look again
    ids = int_list(tokens)
    if ids is not None and first_outside(ids, n_vocab) is None:
        return ids
    for t in tokens:  # the first bad one decides the error
        if not is_int(t):
            raise TypeError(f"{name} must be a list of token ids (ints); it holds a {type(t).__name__}")
        if not 0 <= t < n_vocab:
            raise ValueError(f"token id {t} is out of range [0, {n_vocab})")
    raise AssertionError("unreachable: a bad id was found above")
