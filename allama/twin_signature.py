"""The blocking twins (allama.sync) take the parameters of the async methods they call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def twin_of(async_method: Callable[Concatenate[Any, P], Any]
            ) -> Callable[[Callable[..., R]], Callable[Concatenate[Any, P], R]]:
    """Gives the decorated blocking method the parameters of `async_method`: editors and type
    checkers see them through the ParamSpec, `inspect.signature` through `__wrapped__`."""
    def decorate(method: Callable[..., R]) -> Callable[Concatenate[Any, P], R]:
        method.__wrapped__ = async_method  # type: ignore[attr-defined]
        return method

    return decorate
