"""Which session a completion continues: LlamaSession sets it for the length of a turn, and the
completion binds its request to that session's sequence. A context variable carries it, so
that chat formats and handlers, which call `llama.create_completion` themselves, need not know."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from allama.engine.session_slot import SessionSlot

_turn_slot: ContextVar[SessionSlot | None] = ContextVar("allama_session_turn", default=None)


@contextmanager
def continuing(slot: SessionSlot) -> Iterator[None]:
    """Completions started inside the block (in this task) continue `slot`'s sequence."""
    token = _turn_slot.set(slot)
    try:
        yield
    finally:
        _turn_slot.reset(token)


def current_turn_slot() -> SessionSlot | None:
    """The session sequence a create_completion call in this task should continue, if any."""
    return _turn_slot.get()
