"""GBNF for JSON numbers within bounds: integers in [low, high] and decimals with inclusive
or exclusive bounds, written digit by digit (no exponent), so that every string the
grammar allows is in range. Integers have at most 16 digits, like the unbounded JSON
grammar's.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

MAX_INTEGER = 10**16 - 1


class Rules(Protocol):
    """Where new grammar rules go (the schema converter)."""

    def reserve(self, hint: str) -> str: ...  # a new, unique rule name

    def define(self, name: str, body: str) -> None: ...


def _digits(low: int, high: int) -> str:
    """A digit class for low..high."""
    return f"[{low}]" if low == high else f"[{low}-{high}]"


def _same_length(low: str, high: str) -> list[str]:
    """Alternatives matching the equal-length decimal strings from `low` to `high`."""
    n = len(low)
    if n == 1:
        return [_digits(int(low), int(high))]
    if low[0] == high[0]:
        return [f'"{low[0]}" {tail}' for tail in _same_length(low[1:], high[1:])]
    rest = n - 1
    first, last = int(low[0]), int(high[0])
    out = []
    if low[1:] != "0" * rest:
        out += [f'"{low[0]}" {tail}' for tail in _same_length(low[1:], "9" * rest)]
        first += 1
    middle_high = last if high[1:] == "9" * rest else last - 1
    if first <= middle_high:
        out.append(f"{_digits(first, middle_high)} [0-9]{{{rest}}}")
    if high[1:] != "9" * rest:
        out += [f'"{high[0]}" {tail}' for tail in _same_length("0" * rest, high[1:])]
    return out


def unsigned_range(low: int, high: int) -> list[str]:
    """Alternatives matching the canonical decimals of the integers low..high (0 <= low)."""
    out: list[str] = []
    full: list[int] = []  # lengths n whose whole range 10^(n-1)..10^n-1 is included
    while low <= high:
        top = min(high, 10 ** len(str(low)) - 1)
        n = len(str(low))
        if n > 1 and low == 10 ** (n - 1) and top == 10**n - 1:
            full.append(n - 1)
        else:
            out += _same_length(str(low), str(top))
        low = top + 1
    if full:
        reps = f"{{{full[0]}}}" if len(full) == 1 else f"{{{full[0]},{full[-1]}}}"
        out.append(f"[1-9] [0-9]{reps}")
    return out


def integer_range(low: int | None, high: int | None) -> str:
    """A GBNF expression for the integers in [low, high] (None: unbounded on that side)."""
    low = -MAX_INTEGER if low is None else max(low, -MAX_INTEGER)
    high = MAX_INTEGER if high is None else min(high, MAX_INTEGER)
    parts = unsigned_range(max(0, low), high) if high >= 0 else []
    if low < 0:
        parts.append(f'"-" ( {" | ".join(unsigned_range(max(1, -high), -low))} )')
    return " | ".join(parts)


class _Fractions:
    """Rules for the digits after a decimal point, as states of a digit automaton: the
    digits read so far either settle a bound (the rest is free) or equal it (the rest
    is compared with its remaining digits)."""

    def __init__(self, rules: Rules, hint: str) -> None:
        self._rules = rules
        self._hint = hint
        self._names: dict[tuple, str] = {}

    @staticmethod
    def _empty_ok(state: tuple) -> bool:
        low, low_incl, high, high_incl = state
        low_ok = low is None or (low == "" and low_incl)
        high_ok = high is None or high != "" or high_incl
        return low_ok and high_ok

    @staticmethod
    def _step(state: tuple, digit: int) -> tuple | None:
        low, low_incl, high, high_incl = state
        if low is not None:
            a = int(low[0]) if low else 0
            if digit < a:
                return None
            low = low[1:] if digit == a else None
            if low == "" and low_incl:
                low = None
        if high is not None:
            b = int(high[0]) if high else 0
            if digit > b:
                return None
            high = high[1:] if digit == b else None
        return (low, low_incl, high, high_incl)

    def _alive(self, state: tuple, seen: frozenset = frozenset()) -> bool:
        if self._empty_ok(state):
            return True
        if state in seen:
            return False
        return any(nxt is not None and self._alive(nxt, seen | {state})
                   for nxt in (self._step(state, d) for d in range(10)))

    def _transitions(self, state: tuple) -> str:
        """Alternatives of one digit then the rest (at least one digit)."""
        groups: list[tuple[int, int, tuple]] = []
        for d in range(10):
            nxt = self._step(state, d)
            if nxt is None or not self._alive(nxt):
                continue
            if groups and groups[-1][2] == nxt and groups[-1][1] == d - 1:
                groups[-1] = (groups[-1][0], d, nxt)
            else:
                groups.append((d, d, nxt))
        return " | ".join(f"{_digits(a, b)} {self.rule(nxt)}" for a, b, nxt in groups)

    def rule(self, state: tuple) -> str:
        """The rule for the digits that may follow in `state` (possibly none)."""
        if state[0] is None and state[2] is None:
            return "[0-9]*"
        if state not in self._names:
            name = self._names[state] = self._rules.reserve(f"{self._hint}-frac")
            body = self._transitions(state)
            if self._empty_ok(state):
                body = f"( {body} )?" if body else '""'
            self._rules.define(name, body)
        return self._names[state]

    def fraction(self, state: tuple) -> str | None:
        """The optional '.digits' part for `state`; None if no fraction fits."""
        if not self._alive(state):
            return None
        first = self._transitions(state)
        if not first:
            return "" if self._empty_ok(state) else None
        part = f'"." ( {first} )'
        return f"( {part} )?" if self._empty_ok(state) else part


def _split(value: Decimal) -> tuple[int, str]:
    """(integer part, fraction digits without trailing zeros) of a non-negative decimal."""
    whole = int(value)
    fraction = format(value - whole, "f").partition(".")[2].rstrip("0")
    return whole, fraction


def _magnitudes(fractions: _Fractions, low: Decimal, low_incl: bool, high: Decimal | None,
                high_incl: bool) -> list[str]:
    """Alternatives for non-negative decimals m with low <=/< m <=/< high (high None: no bound)."""
    low_whole, low_frac = _split(low)
    out = []
    if high is not None:
        high_whole, high_frac = _split(high)
        if high_whole > MAX_INTEGER:
            high, high_whole = None, MAX_INTEGER
    if high is not None and low_whole == high_whole:
        frac = fractions.fraction((low_frac, low_incl, high_frac, high_incl))
        return [] if frac is None else [f'"{low_whole}" {frac}'.strip()]
    frac = fractions.fraction((low_frac, low_incl, None, True))
    if frac is not None:
        out.append(f'"{low_whole}" {frac}'.strip())
    top = high_whole - 1 if high is not None else MAX_INTEGER
    if low_whole + 1 <= top:
        out.append(f'( {" | ".join(unsigned_range(low_whole + 1, top))} ) ( "." [0-9]+ )?')
    if high is not None:
        frac = fractions.fraction(("", True, high_frac, high_incl))
        if frac is not None:
            out.append(f'"{high_whole}" {frac}'.strip())
    return out


def number_range(rules: Rules, hint: str, low: Decimal | None, low_incl: bool, high: Decimal | None,
                 high_incl: bool) -> str | None:
    """A GBNF expression for decimals within the bounds (None: unbounded), or None if none fit."""
    if low is not None and high is not None and (high < low or (high == low and not (low_incl and high_incl))):
        return None
    fractions = _Fractions(rules, hint)
    parts = []
    if high is None or high > 0 or (high == 0 and high_incl):
        floor = Decimal(0) if low is None or low < 0 else low
        parts += _magnitudes(fractions, floor, low_incl if low is not None and low >= 0 else True, high, high_incl)
    if low is None or low < 0:
        # negative values: "-" and a magnitude in (max(-high, 0), -low]
        floor, floor_incl = (-high, high_incl) if high is not None and high < 0 else (Decimal(0), False)
        negative = _magnitudes(fractions, floor, floor_incl, None if low is None else -low, low_incl)
        if negative:
            parts.append(f'"-" ( {" | ".join(negative)} )')
    return " | ".join(parts) if parts else None
