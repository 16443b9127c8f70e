"""Logits processors and stopping criteria: callbacks a completion runs once per generated token.

A logits processor gets the sequence's token ids so far (prompt included) and the scores of
the next token (float32, n_vocab) and returns the scores to sample from; a stopping criterion
gets the same two arrays and returns True to end the completion. `create_completion` takes
one callable or, as llama-cpp-python, a list of them (run in order; any criterion stops).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "LogitsProcessor",
    "LogitsProcessorList",
    "MinTokensLogitsProcessor",
    "StoppingCriteria",
    "StoppingCriteriaList",
]

LogitsProcessor = Callable[[npt.NDArray[np.intc], npt.NDArray[np.single]], npt.NDArray[np.single]]
StoppingCriteria = Callable[[npt.NDArray[np.intc], npt.NDArray[np.single]], bool]


class LogitsProcessorList(list[LogitsProcessor]):
    """Processors applied in order, each to the scores the one before returned."""

    def __call__(self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


class StoppingCriteriaList(list[StoppingCriteria]):
    """Criteria asked in order; the completion stops when any says so."""

    def __call__(self, input_ids: npt.NDArray[np.intc], logits: npt.NDArray[np.single]) -> bool:
        return any(criterion(input_ids, logits) for criterion in self)


class MinTokensLogitsProcessor:
    """Rules out `token_eos` until `min_tokens` tokens have been generated.

    The prompt length is taken at the first call, so one instance serves one completion
    (as in llama-cpp-python).
    """

    def __init__(self, min_tokens: int, token_eos: int) -> None:
        self.min_tokens = min_tokens
        self.token_eos = token_eos
        self.prompt_tokens: int | None = None

    def __call__(self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
        if len(input_ids) - self.prompt_tokens < self.min_tokens:
            scores[self.token_eos] = -np.inf
        return scores


def as_logits_processor(value: Any) -> LogitsProcessor | None:
    """`value` (None, a callable, or a list/tuple of callables) as one callable; None when
    there is nothing to run (an empty list keeps the fast, native sampling path)."""
    return _as_callable("logits_processor", value, LogitsProcessorList)


def as_stopping_criteria(value: Any) -> StoppingCriteria | None:
    """`value` (None, a callable, or a list/tuple of callables) as one callable, or None."""
    return _as_callable("stopping_criteria", value, StoppingCriteriaList)


def _as_callable(name: str, value: Any, combined: type[list[Any]]) -> Any:
    if isinstance(value, (list, tuple)) and not callable(value):
        items = list(value)
        for i, item in enumerate(items):
            if not callable(item):
                raise TypeError(f"{name}[{i}] must be callable, not {type(item).__name__}")
        return combined(items) if items else None
    if isinstance(value, (list, tuple)) and not value:  # an empty LogitsProcessorList
        return None
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or a list of callables, not {type(value).__name__}")
    return value
