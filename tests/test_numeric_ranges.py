"""Bounded integers and numbers in JSON schemas: llama.cpp's grammar engine accepts a
number exactly when it is within the bounds (checked around each bound and at random)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allama.errors import GrammarError
from allama.grammar import json_schema_to_gbnf
from allama.numeric_ranges import MAX_INTEGER

from .grammar_oracle import grammar_accepts

checks = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def llm_options():
    return dict(n_ctx=64)


bound = st.one_of(st.none(), st.integers(-10**7, 10**7), st.integers(-120, 120))


@checks
@given(low=bound, high=bound, probes=st.lists(st.integers(-10**8, 10**8), max_size=4))
def test_integer_bounds_are_exact(llm, low, high, probes):
    if low is not None and high is not None and high < low:
        low, high = high, low
    schema = {"type": "integer", **({"minimum": low} if low is not None else {}),
              **({"maximum": high} if high is not None else {})}
    grammar = json_schema_to_gbnf(schema)
    near = [b + d for b in (low, high, 0) if b is not None for d in (-1, 0, 1)]
    for value in near + probes:
        inside = (low is None or value >= low) and (high is None or value <= high) and abs(value) <= MAX_INTEGER
        assert grammar_accepts(llm, grammar, str(value)) == inside, (schema, value)
    assert not grammar_accepts(llm, grammar, "007")


def test_integer_exclusive_bounds(llm):
    grammar = json_schema_to_gbnf({"type": "integer", "exclusiveMinimum": 2, "maximum": 5, "exclusiveMaximum": 5.5})
    assert [v for v in range(-1, 8) if grammar_accepts(llm, grammar, str(v))] == [3, 4, 5]


decimal_bound = st.one_of(st.none(), st.decimals(-1000, 1000, places=3, allow_nan=False, allow_infinity=False))
written = st.decimals(-1200, 1200, places=4, allow_nan=False, allow_infinity=False)


@checks
@given(low=decimal_bound, high=decimal_bound, low_open=st.booleans(), high_open=st.booleans(),
       probes=st.lists(written, max_size=4))
def test_number_bounds_are_exact(llm, low, high, low_open, high_open, probes):
    if low is not None and high is not None and high < low:
        low, high = high, low
    schema: dict = {"type": "number"}
    if low is not None:
        schema["exclusiveMinimum" if low_open else "minimum"] = float(low)
    if high is not None:
        schema["exclusiveMaximum" if high_open else "maximum"] = float(high)
    try:
        grammar = json_schema_to_gbnf(schema)
    except GrammarError:
        assert low == high and (low_open or high_open)
        return
    near = [b + d for b in (low, high, Decimal(0)) if b is not None
            for d in (Decimal("-0.001"), Decimal(0), Decimal("0.0005"), Decimal(1))]
    for value in near + probes:
        inside = ((low is None or (value > low if low_open else value >= low))
                  and (high is None or (value < high if high_open else value <= high)))
        for text in {format(value, "f"), format(value.normalize(), "f")}:
            if text.startswith("-") and Decimal(text) == 0:
                continue  # -0 is written 0
            assert grammar_accepts(llm, grammar, text) == inside, (schema, text)


def test_number_bounds_spelled_variously(llm):
    grammar = json_schema_to_gbnf({"type": "number", "minimum": 0.5, "exclusiveMaximum": 2.25})
    accepted = ["0.5", "0.50", "0.9999", "1", "1.0", "2", "2.2", "2.2499999"]
    rejected = ["0.4999", "0", "2.25", "2.250", "2.3", "3", "-1", "1e0", "01", "1."]
    assert all(grammar_accepts(llm, grammar, t) for t in accepted)
    assert not any(grammar_accepts(llm, grammar, t) for t in rejected)


@pytest.mark.parametrize("schema, reason", [
    ({"type": "number", "minimum": 2, "maximum": 1}, "no number"),
    ({"type": "number", "minimum": 1, "exclusiveMaximum": 1}, "no number"),
    ({"type": "number", "maximum": "ten"}, "finite numbers"),
    ({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}, "maximum is smaller"),
])
def test_empty_or_bad_bounds_raise(schema, reason):
    with pytest.raises(GrammarError, match=reason):
        json_schema_to_gbnf(schema)
