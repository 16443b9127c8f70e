"""Log-probabilities from logits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def log_softmax(logits: np.ndarray | Sequence[float], axis: int = -1) -> np.ndarray:
    """Log-softmax of logits along `axis`, in float32 (shifted by the maximum: no overflow)."""
    x = np.asarray(logits, dtype=np.float32)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
