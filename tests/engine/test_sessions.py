"""SessionTable: sessions own sequence ids between turns, keep what their turns evaluated,
and refuse to be saved or loaded mid-turn; the last completion's KV is saved only while kept."""

from __future__ import annotations

import pytest

from allama.engine.prefix_cache import PrefixCache
from allama.engine.request import Request
from allama.engine.sequence import Sequence
from allama.engine.sessions import SessionTable
from allama.errors import AllamaError, DecodeError, EngineClosedError
from allama.state import LlamaState

from .toy_kv import ToyKV


def table(limit: int = 2) -> tuple[SessionTable, PrefixCache, ToyKV]:
    kv = ToyKV()
    prefix = PrefixCache(kv, 4, kv_unified=True, recurrent=False, n_swa=0, min_shared_prefix=16)
    return SessionTable(kv, prefix, limit), prefix, kv


def turn(slot, tokens: list[int], n_past: int) -> Sequence:
    seq = Sequence(Request(prompt=tokens, chains=[object()], session=slot), 0, None, None, slot.seq_id)
    seq.n_past = n_past
    return seq


def test_at_most_the_limit_of_sessions_are_open_and_closing_one_frees_its_id():
    sessions, prefix, kv = table(limit=2)
    first, second = sessions.open(), sessions.open()
    with pytest.raises(AllamaError, match="at most 2 sessions"):
        sessions.open()
    kv.held[first.seq_id] = 5
    sessions.close(first)
    assert first.closed and first.seq_id not in kv.held and len(sessions) == 1
    assert sessions.open().seq_id == first.seq_id
    sessions.close(first)  # closing twice is harmless


def test_a_turn_leaves_the_session_holding_what_it_evaluated():
    sessions, _, kv = table()
    slot = sessions.open()
    slot.busy = True
    seq = turn(slot, [1, 2, 3], n_past=3)
    seq.tokens += [4, 5]  # 5 was sampled but never evaluated
    seq.n_past = 4
    kv.held[slot.seq_id] = 5
    sessions.settle(slot, seq, None)
    assert not slot.busy and slot.tokens == [1, 2, 3, 4] and kv.held[slot.seq_id] == 4


def test_a_failed_decode_clears_the_sessions_history():
    sessions, _, kv = table()
    slot = sessions.open()
    kv.held[slot.seq_id] = 3
    sessions.settle(slot, turn(slot, [1, 2, 3], 3), DecodeError("failed"))
    assert slot.tokens == [] and slot.seq_id not in kv.held


def test_a_session_is_saved_and_loaded_only_between_turns():
    sessions, _, kv = table()
    slot = sessions.open()
    slot.tokens = [7, 8]
    kv.held[slot.seq_id] = 2
    state = sessions.save(slot, seed=3)
    assert state.tokens == [7, 8] and state.seed == 3
    slot.busy = True
    with pytest.raises(AllamaError, match="running a turn"):
        sessions.save(slot, 0)
    slot.busy = False
    sessions.load(slot, LlamaState.of_sequence([1, 2, 3], (3).to_bytes(4, "little"), 0))
    assert slot.tokens == [1, 2, 3] and kv.held[slot.seq_id] == 3
    sessions.close(slot)
    with pytest.raises(EngineClosedError):
        sessions.load(slot, state)


def test_the_last_completion_is_saved_only_while_its_kept_kv_is_unchanged():
    sessions, prefix, kv = table()
    assert sessions.save_last_completion(0) is None
    seq_id = prefix.take_id()
    tokens = [1, 2, 3]
    kv.held[seq_id] = 3
    prefix.keep(seq_id, tokens, ())
    sessions.last_finished = (seq_id, tokens)
    assert sessions.save_last_completion(5).tokens == [1, 2, 3]
    prefix.kept[seq_id] = [1, 2, 3]  # a later request took the sequence over and kept it again
    with pytest.raises(AllamaError, match="no longer held"):
        sessions.save_last_completion(5)
