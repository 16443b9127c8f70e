"""Text that may be the start of a marker (a stop string, a thinking or tool-call tag):
streams hold such an end back until the next piece says whether the marker completes."""

from __future__ import annotations

from collections.abc import Sequence


def held_suffix(text: str, markers: Sequence[str]) -> int:
    """Length of the longest end of `text` that could be the start of one of `markers`
    (and so must wait for more text before it can be sent)."""
    hold = 0
    for marker in markers:
        for k in range(min(len(marker) - 1, len(text)), hold, -1):
            if text.endswith(marker[:k]):
                hold = k
                break
    return hold
