"""Checks of the arguments callers pass to Llama and the chat layer: one bad value gets the
same TypeError or ValueError, naming the argument, wherever it enters (the Python API, a
chat handler, the HTTP server). What llama.cpp would abort on is also checked natively."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

INT32_MAX = 2**31 - 1

# create_completion's sampling values: (name, minimum, maximum), None for unbounded. Floats
# must be finite; the native SamplerChain checks again what would reach a GGML_ASSERT.
_SAMPLING_REALS = (
    ("temperature", None, None),  # < 0: sample from the unscaled distribution (llama.cpp's meaning)
    ("top_p", 0.0, 1.0),
    ("min_p", 0.0, 1.0),
    ("typical_p", 0.0, 1.0),
    ("repeat_penalty", None, None),  # > 0, checked natively
    ("frequency_penalty", None, None),
    ("presence_penalty", None, None),
    ("tfs_z", None, None),  # accepted and ignored, as llama.cpp dropped it
    ("mirostat_tau", 0.0, None),
    ("mirostat_eta", 0.0, None),
    ("xtc_probability", 0.0, 1.0),
    ("xtc_threshold", None, None),
    ("dry_multiplier", 0.0, None),
    ("dry_base", None, None),
    ("top_n_sigma", None, None),  # <= 0: off
)
_SAMPLING_WHOLES = (
    ("top_k", -INT32_MAX, INT32_MAX),  # <= 0: off
    ("mirostat_mode", 0, 2),
    ("dry_allowed_length", 0, INT32_MAX),
    ("repeat_last_n", -1, INT32_MAX),  # -1: the context size
    ("dry_penalty_last_n", -1, INT32_MAX),  # -1: the context size
)


def is_int(value: Any) -> bool:
    """Whether `value` is an int (NumPy's included) and not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def int_list(values: Iterable[Any]) -> list[int] | None:
    """`values` as a list of ints if every one is an int (NumPy's included, bools not), else None.
    A prompt of ids is checked per request: plain ints and integer arrays take C-speed paths."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iu":
        return values.tolist()
    items = list(values)
    if set(map(type, items)) <= {int}:
        return items
    if all(is_int(t) for t in items):
        return [int(t) for t in items]
    return None


def whole(name: str, value: Any, minimum: int | None = None, maximum: int | None = INT32_MAX) -> int:
    """`value` as an int in [minimum, maximum]."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, not {value}")
    return int(value)


def real(name: str, value: Any, minimum: float | None = None, maximum: float | None = None) -> float:
    """`value` as a finite float in [minimum, maximum]."""
    if not (is_int(value) or isinstance(value, (float, np.floating))):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = (f"between {minimum} and {maximum}" if minimum is not None and maximum is not None
                  else f"at least {minimum}" if minimum is not None else f"at most {maximum}")
        raise ValueError(f"{name} must be {bounds}, not {value}")
    return value


def check_sampling(values: Mapping[str, Any]) -> None:
    """The sampling values of a completion request (those present in `values`)."""
    for name, low, high in _SAMPLING_REALS:
        if name in values:
            real(name, values[name], low, high)
    for name, low, high in _SAMPLING_WHOLES:
        if values.get(name) is not None:
            whole(name, values[name], low, high)


def seed(value: Any) -> int | None:
    """A seed: any int (used modulo 2**32), or None."""
    if value is not None and not is_int(value):
        raise TypeError(f"seed must be an int, not {type(value).__name__}")
    return value


def string_list(name: str, value: Any) -> list[str]:
    """`value` (a list or tuple of strings) as a list."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of strings, not {type(value).__name__}")
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"{name} must be a list of strings; it holds a {type(item).__name__}")
    return list(value)


def stop_strings(stop: Any) -> list[str]:
    """`stop` (a string, a list of strings, or None) as a list of non-empty strings."""
    if stop is None:
        return []
    if not isinstance(stop, (str, list, tuple)):
        raise TypeError(f"stop must be a string or a list of strings, not {type(stop).__name__}")
    stops = string_list("stop", [stop] if isinstance(stop, str) else stop)
    if not all(stops):
        raise ValueError("stop strings must not be empty (an empty string would stop at once)")
    return stops


def logit_bias(bias: Any) -> dict[int, float]:
    """A logit_bias mapping (token id, or its decimal string -> bias) as {int: float}. Token
    ranges and NaN are checked natively."""
    if not isinstance(bias, Mapping):
        raise TypeError(f"logit_bias must be a dict of token id -> bias, not {type(bias).__name__}")
    out = {}
    for key, value in bias.items():
        if is_int(key):
            token = int(key)
        elif isinstance(key, str) and key.strip().lstrip("-").isdigit():
            token = int(key)
        else:
            raise ValueError(f"logit_bias keys must be token ids, not {key!r}")
        if not (is_int(value) or isinstance(value, (float, np.floating))):
            raise TypeError(f"logit_bias values must be numbers; token {key!r} has a {type(value).__name__}")
        if not -INT32_MAX - 1 <= token <= INT32_MAX:
            raise ValueError(f"logit_bias token id {token} is out of range")
        out[token] = float(value)
    return out


def optional_callable(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")
    return value


def optional_mapping(name: str, value: Any) -> Any:
    if value is not None and not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict, not {type(value).__name__}")
    return value


def optional_str(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    return value
