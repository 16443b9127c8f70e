"""Token ids from callers and custom tokenizers are checked before llama.cpp indexes with them."""

from __future__ import annotations

import numpy as np
import pytest

from allama.token_ids import checked_token_ids, first_outside


def test_ids_in_the_vocabulary_come_back_as_ints():
    out = checked_token_ids([0, np.int64(5), 9], 10)
    assert out == [0, 5, 9] and all(type(t) is int for t in out)


@pytest.mark.parametrize("tokens, error, message", [
    ("abc", TypeError, "tokens must be a list of token ids"),
    (7, TypeError, "tokens must be a list of token ids"),
    ([1, True], TypeError, "it holds a bool"),
    ([1, 2.0], TypeError, "it holds a float"),
    ([1, 10], ValueError, r"token id 10 is out of range \[0, 10\)"),
    ([-1], ValueError, "token id -1 is out of range"),
    ([10, "x"], ValueError, "token id 10"),  # checked in order: the first bad id decides
])
def test_anything_else_is_refused_with_the_name_given(tokens, error, message):
    with pytest.raises(error, match=message):
        checked_token_ids(tokens, 10, "tokens")


@pytest.mark.parametrize("tokens", [
    np.array([0, 5, 9], dtype=np.int32), np.array([0, 5, 9], dtype=np.uint16), (0, 5, 9),
    (t for t in [0, 5, 9]), [0, np.int64(5), 9]])
def test_arrays_tuples_and_iterables_of_ids_are_taken(tokens):
    out = checked_token_ids(tokens, 10)
    assert out == [0, 5, 9] and all(type(t) is int for t in out)


def test_a_bad_id_in_an_iterable_is_named_though_the_iterable_is_read_once():
    with pytest.raises(TypeError, match="it holds a float"):
        checked_token_ids((t for t in [1, 2.5]), 10)


def test_first_outside_names_the_first_id_outside_the_vocabulary():
    assert first_outside([3, 12, -1], 10) == 12
    assert first_outside([0, 9], 10) is None
    assert first_outside([], 10) is None
