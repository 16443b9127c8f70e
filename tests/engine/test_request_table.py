"""RequestTable: admission order and its limits, where a finished sequence's KV goes, its last
output, cancellation, timeouts, parking for want of KV cells and shutdown, checked on a toy
KV ledger (the end-to-end outputs are in test_scheduler.py and test_faults.py)."""

from __future__ import annotations

import time
from collections import Counter
from types import SimpleNamespace

import pytest

from allama.engine.config import EngineConfig
from allama.engine.inbox import Inbox
from allama.engine.loop_handle import LoopHandle
from allama.engine.output_processor import OutputProcessor
from allama.engine.prefix_cache import PrefixCache
from allama.engine.request import Output, Request
from allama.engine.request_table import RequestTable
from allama.engine.sequence import GENERATING, PREFILLING, Sequence
from allama.engine.sessions import SessionTable
from allama.errors import EngineClosedError, KVCacheFullError, RequestTimeoutError

from .toy_kv import ToyKV


class RecordingSink:
    def __init__(self, eager: bool = True) -> None:
        self.outputs: list[Output] = []
        self.eager = eager

    def push(self, outputs: list[Output], final: bool = False) -> None:
        self.outputs.extend(outputs)


def loop_handle(*, closed: bool = False) -> LoopHandle:
    """An event loop stand-in that runs what is posted at once (or refuses it, once closed)."""
    def post(callback, *args):
        if closed:
            raise RuntimeError("Event loop is closed")
        callback(*args)
    return LoopHandle(object(), post)


LOOP = loop_handle()


def table(*, n_parallel: int = 2, n_keep: int = 2, cells: int = 1 << 20) -> tuple[RequestTable, ToyKV]:
    kv = ToyKV(cells)
    config = EngineConfig(n_ctx=64, n_parallel=n_parallel, n_batch=32, n_keep=n_keep, max_queue=8)
    prefix = PrefixCache(kv, n_parallel + n_keep, kv_unified=True, recurrent=False, n_swa=0, min_shared_prefix=16)
    sessions = SessionTable(kv, prefix, n_keep)
    return RequestTable(kv, config, Inbox(8), prefix, sessions, OutputProcessor(kv, SimpleNamespace(eog_tokens=[]), 64), Counter()), kv


def submit(requests: RequestTable, prompt: list[int], sink: RecordingSink | None = None, loop: LoopHandle = LOOP,
           **fields) -> Request:
    """Posts a request to the table's inbox and hands it over as the decode thread does."""
    request = Request(prompt=list(prompt), chains=[object()] * fields.pop("n", 1), **fields)
    requests.inbox.submit(request, sink or RecordingSink(), loop, lambda: 0)
    for submission in requests.inbox.take(lambda: False).submissions:
        requests.add(submission)
    return request


def evaluated(seq: Sequence, kv: ToyKV, generated: list[int] = ()) -> Sequence:
    """The sequence as after its prompt was decoded and `generated` sampled (the last not yet evaluated)."""
    seq.tokens += generated
    seq.n_past = len(seq.tokens) - (1 if generated else 0)
    seq.generated = len(generated)
    seq.phase = GENERATING
    kv.held[seq.seq_id] = seq.n_past
    return seq


def test_admission_takes_higher_priority_first_then_arrival_up_to_n_parallel():
    requests, _ = table(n_parallel=2)
    first, urgent, last = (submit(requests, [1, 2, 3], priority=p) for p in (0, 5, 0))
    requests.admit()
    assert [s.request for s in requests.active] == [urgent, first]
    assert [s.request for s in requests.waiting] == [last] and requests.inbox.queued == 1
    assert requests.counters["prompt_tokens"] == 6


def test_a_prompt_that_would_not_fit_beside_the_running_ones_waits_but_alone_always_starts():
    requests, kv = table(cells=64)
    big = submit(requests, list(range(70)))  # more than the whole cache: alone, it starts anyway
    requests.admit()
    assert [s.request for s in requests.active] == [big]
    requests.finish(requests.active[0], finish_reason="stop")
    submit(requests, list(range(40)))
    submit(requests, list(range(30)))
    requests.admit()
    assert len(requests.active) == 1 and len(requests.waiting) == 1  # 40 + 30 cells >= 64


def test_a_prompt_waiting_for_kv_cells_with_slots_free_warns_once_naming_kv_size(caplog):
    requests, _ = table(n_parallel=4, cells=64)
    submit(requests, list(range(40)))
    with caplog.at_level("WARNING", logger="allama.engine"):
        submit(requests, list(range(30)))
        requests.admit()
        requests.admit()
        submit(requests, list(range(30)))
        requests.admit()
    assert len(requests.active) == 1 and len(requests.waiting) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "waits for KV cells with sequence slots free" in warnings[0] and "kv_size=256 " in warnings[0]


def test_a_parked_sequence_warns_once_naming_kv_size(caplog):
    requests, kv = table(n_parallel=3, n_keep=0)
    *_, newest = (submit(requests, [1, 2], submitted_at=float(t)) for t in range(3))
    requests.admit()
    for seq in requests.active:
        evaluated(seq, kv, [9])
    with caplog.at_level("WARNING", logger="allama.engine"):
        requests.make_room()
        requests.make_room()
    assert requests.counters["preemptions"] == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert f"request {newest.id} was parked for want of KV cells" in warnings[0] and "kv_size=192 " in warnings[0]


def test_a_prompt_waiting_for_a_sequence_slot_does_not_warn(caplog):
    requests, _ = table(n_parallel=1, cells=64)
    with caplog.at_level("WARNING", logger="allama.engine"):
        submit(requests, [1, 2, 3])
        submit(requests, [4, 5, 6])
        requests.admit()
    assert len(requests.waiting) == 1 and not caplog.records


def test_choices_beyond_the_first_follow_its_prompt():
    requests, _ = table(n_parallel=3)
    submit(requests, [1, 2, 3], n=3)
    requests.admit()
    leader, *followers = requests.active
    assert [f.index for f in followers] == [1, 2] and all(f.leader is leader for f in followers)
    assert len({s.seq_id for s in requests.active}) == 3


def test_a_sessions_next_turn_waits_for_its_running_turn_and_a_closed_sessions_turn_fails():
    requests, _ = table()
    slot = requests.sessions.open()
    first = submit(requests, [1, 2], session=slot)
    sink = RecordingSink()
    second = submit(requests, [1, 2, 3], sink, session=slot)
    requests.admit()
    assert [s.request for s in requests.active] == [first] and slot.busy
    assert [s.request for s in requests.waiting] == [second]  # kept its place in the queue
    requests.close_session(slot)
    requests.admit()
    requests.flush()
    assert not requests.active and not requests.waiting and requests.inbox.queued == 0
    assert isinstance(sink.outputs[-1].error, EngineClosedError)


def test_a_finished_sequence_keeps_its_kv_for_reuse_and_its_last_output_has_usage():
    requests, kv = table()
    sink = RecordingSink()
    submit(requests, [1, 2, 3], sink)
    requests.admit()
    seq = evaluated(requests.active[0], kv, [7, 8])
    requests.finish(seq, finish_reason="stop", last=Output(0, [8], "x"))
    assert sink.outputs == []  # nothing goes out before the step's flush
    requests.flush()
    (out,) = sink.outputs
    assert (out.text, out.finish_reason) == ("x", "stop")
    assert out.usage == {"prompt_tokens": 3, "completion_tokens": 2, "cached_tokens": 0}
    assert requests.prefix_cache.kept[seq.seq_id] == [1, 2, 3, 7] and kv.held[seq.seq_id] == 4
    assert requests.sessions.last_finished == (seq.seq_id, [1, 2, 3, 7])
    assert not requests.active and not requests.submissions and requests.counters["requests_finished"] == 1


def test_usage_waits_for_the_last_choice_of_a_request():
    requests, kv = table()
    sink = RecordingSink()
    submit(requests, [1, 2], sink, n=2)
    requests.admit()
    first, second = requests.active
    requests.finish(evaluated(first, kv, [5]), finish_reason="length")
    requests.finish(evaluated(second, kv, [6, 7]), finish_reason="stop")
    requests.flush()
    assert [o.usage for o in sink.outputs] == [None, {"prompt_tokens": 2, "completion_tokens": 3,
                                                      "cached_tokens": 0}]


def test_a_failed_sequence_frees_its_kv_and_ends_with_its_error():
    requests, kv = table()
    sink = RecordingSink()
    submit(requests, [1, 2, 3], sink)
    requests.admit()
    seq = evaluated(requests.active[0], kv, [7])
    error = ValueError("grammar")
    requests.finish(seq, error=error)
    requests.flush()
    assert sink.outputs[-1].error is error and sink.outputs[-1].finish_reason is None
    assert seq.seq_id not in kv.held and not requests.prefix_cache.kept


def test_without_kept_ids_a_finished_sequence_is_freed():
    requests, kv = table(n_keep=0)
    submit(requests, [1, 2, 3])
    requests.admit()
    seq = evaluated(requests.active[0], kv, [7])
    requests.finish(seq, finish_reason="stop")
    assert seq.seq_id not in kv.held and not requests.prefix_cache.kept


def test_a_sequence_ending_inside_confirmed_draft_tokens_keeps_only_what_it_evaluated():
    requests, kv = table()
    submit(requests, [1, 2, 3])
    requests.admit()
    seq = evaluated(requests.active[0], kv, [7, 8])
    seq.drafted = True
    kv.held[seq.seq_id] = 9  # the KV of the whole proposal
    requests.finish(seq, finish_reason="stop")
    assert kv.held[seq.seq_id] == seq.n_past == 4 and not seq.drafted


def test_keep_state_hands_back_the_first_choices_state():
    requests, kv = table()
    sink = RecordingSink()
    submit(requests, [1, 2, 3], sink, keep_state=True)
    requests.admit()
    requests.finish(evaluated(requests.active[0], kv, [7]), finish_reason="stop")
    requests.flush()
    assert sink.outputs[-1].state.tokens == [1, 2, 3]


def test_cancelling_drops_waiting_requests_and_ends_running_ones_without_an_output():
    requests, kv = table(n_parallel=1)
    running_sink, waiting_sink = RecordingSink(), RecordingSink()
    running = submit(requests, [1, 2, 3], running_sink)
    waiting = submit(requests, [4, 5], waiting_sink)
    requests.admit()
    seq = evaluated(requests.active[0], kv, [7])
    requests.cancel({running.id, waiting.id})
    requests.flush()
    assert not requests.active and not requests.waiting and not requests.submissions
    assert requests.inbox.queued == 0 and requests.counters["requests_cancelled"] == 2
    assert running_sink.outputs == [] and waiting_sink.outputs == []
    assert seq.seq_id not in kv.held  # a cancelled sequence's KV is not kept


def test_a_request_past_its_timeout_fails_whether_running_or_waiting():
    requests, kv = table(n_parallel=1)
    sinks = [RecordingSink(), RecordingSink(), RecordingSink()]
    past = time.monotonic() - 10
    submit(requests, [1, 2], sinks[0], timeout=5.0, submitted_at=past)
    submit(requests, [3, 4], sinks[1], timeout=5.0, submitted_at=past)
    submit(requests, [5, 6], sinks[2], timeout=60.0)
    requests.admit()
    evaluated(requests.active[0], kv, [7])
    requests.expire_deadlines()
    assert [type(s.outputs[-1].error) for s in sinks[:2]] == [RequestTimeoutError] * 2
    assert sinks[2].outputs == [] and [s.request.timeout for s in requests.waiting] == [60.0]
    assert requests.inbox.queued == 1 and not requests.active


def test_without_room_a_kept_sequence_goes_first_then_the_newest_sequence_is_parked():
    requests, kv = table(n_parallel=3)
    submit(requests, [1, 2])
    requests.admit()
    requests.finish(evaluated(requests.active[0], kv, [3]), finish_reason="stop")  # kept
    old, new = submit(requests, [4, 5], submitted_at=1.0), submit(requests, [6, 7], submitted_at=2.0)
    requests.admit()
    for seq in requests.active:
        evaluated(seq, kv, [9])
    requests.make_room()
    assert not requests.prefix_cache.kept and not requests.admission_paused
    requests.make_room()
    parked = next(s for s in requests.active if s.request is new)
    assert parked.parked and parked.phase == PREFILLING and parked.n_past == 0 and parked.seq_id not in kv.held
    assert requests.admission_paused and requests.counters["preemptions"] == 1
    submit(requests, [8, 9])
    requests.admit()
    assert len(requests.active) == 2  # the parked sequence goes before new requests
    requests.finish(next(s for s in requests.active if s.request is old), finish_reason="stop")
    assert not parked.parked and not requests.admission_paused


def test_a_sequence_alone_that_needs_more_than_the_whole_cache_fails():
    requests, kv = table(n_keep=0, cells=16)
    sink = RecordingSink()
    submit(requests, list(range(12)), sink)
    requests.admit()
    evaluated(requests.active[0], kv, [1])
    requests.make_room()
    assert not requests.active and isinstance(sink.outputs[-1].error, KVCacheFullError)


def test_the_sequences_of_a_closed_event_loop_end_without_an_output():
    requests, kv = table()
    gone = RecordingSink()
    submit(requests, [1, 2], gone, loop_handle(closed=True))
    submit(requests, [3, 4])
    requests.admit()
    for seq in requests.active:
        requests.emit(seq, Output(seq.index, [5], "x"))
    requests.flush()
    assert [s.request.prompt for s in requests.active] == [[3, 4]] and gone.outputs == []


def test_a_stream_gets_each_token_at_once_a_whole_result_with_the_last_one():
    requests, kv = table()
    stream, whole = RecordingSink(), RecordingSink(eager=False)
    submit(requests, [1, 2], stream)
    submit(requests, [3, 4], whole)
    requests.admit()
    for seq in requests.active:
        evaluated(seq, kv, [7])
    for token in (5, 6):
        for seq in requests.active:
            requests.emit_token(seq, Output(seq.index, [token], str(token)))
        requests.flush()
    assert [o.tokens for o in stream.outputs] == [[5], [6]] and whole.outputs == []
    for seq in list(requests.active):
        requests.finish(seq, finish_reason="length", last=Output(seq.index, [8], "8"))
    requests.flush()
    assert [o.tokens for o in whole.outputs] == [[5], [6], [8]] and whole.outputs[-1].finish_reason == "length"
    assert [o.tokens for o in stream.outputs] == [[5], [6], [8]]


def test_held_outputs_go_out_every_held_outputs_tokens_so_a_closed_loop_is_noticed(monkeypatch):
    monkeypatch.setattr("allama.engine.request_table.HELD_OUTPUTS", 3)
    requests, kv = table()
    submit(requests, [1, 2], RecordingSink(eager=False), loop_handle(closed=True))
    requests.admit()
    seq = evaluated(requests.active[0], kv, [7])
    for token in (5, 6):
        requests.emit_token(seq, Output(0, [token], ""))
        requests.flush()
    assert requests.active == [seq]  # nothing was posted yet
    requests.emit_token(seq, Output(0, [9], ""))
    requests.flush()
    assert requests.active == [] and 0 not in kv.held


def test_at_shutdown_running_waiting_and_late_requests_all_get_the_error():
    requests, kv = table(n_parallel=1)
    sinks = [RecordingSink(), RecordingSink(), RecordingSink()]
    submit(requests, [1, 2], sinks[0])
    submit(requests, [3, 4], sinks[1])
    requests.admit()
    late = Inbox(8)
    late.submit(Request(prompt=[5], chains=[object()]), sinks[2], LOOP, lambda: 0)
    error = EngineClosedError("the model was closed")
    requests.fail_all(error, late.drain().submissions)
    requests.flush()
    assert [s.outputs[-1].error for s in sinks] == [error] * 3
    assert not requests.active and not requests.waiting


@pytest.mark.parametrize("paused, running, waiting, has_work", [
    (False, False, False, False), (False, False, True, True), (True, False, True, False), (True, True, False, True)])
def test_there_is_work_while_a_sequence_runs_or_a_request_may_be_admitted(paused, running, waiting, has_work):
    requests, _ = table(n_parallel=1)
    if running:
        submit(requests, [1])
        requests.admit()
    if waiting:
        submit(requests, [2])
    requests.admission_paused = paused
    assert requests.has_work() is has_work


def test_a_request_cancelled_twice_is_counted_once():
    requests, _ = table(n_parallel=1)
    waiting = submit(requests, [1, 2])
    requests.cancel({waiting.id})
    requests.cancel({waiting.id})
    assert requests.counters["requests_cancelled"] == 1 and requests.inbox.queued == 0
