"""KV positions of media prompts: after an M-RoPE medium (fewer positions than tokens)
positions lag token indices; elsewhere they are the indices."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from allama.engine.media_positions import before_media, check_media, next_media_start, position, position_shifts
from allama.engine.request import MediaSpan


def span(start: int, length: int, n_pos: int, mrope: bool = True) -> MediaSpan:
    chunk = SimpleNamespace(n_pos=n_pos)
    return MediaSpan(start, length, SimpleNamespace(uses_mrope=mrope), [chunk], 0)


def request(prompt_len: int, *spans: MediaSpan, prompt_logprobs: bool = False):
    return SimpleNamespace(prompt=list(range(prompt_len)), media=spans, prompt_logprobs=prompt_logprobs)


def test_positions_lag_indices_after_each_mrope_medium():
    r = request(40, span(2, 12, 4), span(20, 6, 3))  # lags 8, then 8 + 3
    shifts = position_shifts(r)
    assert shifts == [(14, 8), (26, 11)]
    assert [position(shifts, i) for i in (0, 2, 13, 14, 20, 26, 39)] == [0, 2, 13, 6, 12, 15, 28]


def test_media_whose_positions_equal_their_tokens_keep_indices():
    assert position_shifts(request(20, span(3, 5, 5, mrope=False))) is None
    assert position(None, 17) == 17


def test_cuts_never_split_a_medium():
    r = request(30, span(5, 10, 4))
    assert [before_media(r, n) for n in (3, 5, 9, 15, 20)] == [3, 5, 5, 15, 20]
    assert next_media_start(r, 0) == 5 and next_media_start(r, 6) == 30


@pytest.mark.parametrize("spans, message", [
    ((span(5, 10, 10), span(8, 4, 4)), "in order"),
    ((span(25, 5, 5),), "text after its last medium"),
    ((span(2, 8, 3, mrope=False),), "does not use M-RoPE"),
])
def test_bad_spans_raise(spans, message):
    with pytest.raises(ValueError, match=message):
        check_media(request(30, *spans))
