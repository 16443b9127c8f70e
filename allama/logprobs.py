"""Log-probabilities from logits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def log_softmax(logits: np.ndarray | Sequence[float], axis: int = -1) -> np.ndarray:
    """Log-softmax of logits along `axis`, in float32 (shifted by the maximum: no overflow; the
    normaliser summed in float64, exact enough over a vocabulary of 200k)."""
    x = np.asarray(logits, dtype=np.float32)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    normaliser = np.log(np.sum(np.exp(shifted, dtype=np.float64), axis=axis, keepdims=True))
    return shifted - normaliser.astype(np.float32)
