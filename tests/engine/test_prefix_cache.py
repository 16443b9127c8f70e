"""PrefixCache: which KV a new sequence starts from, kept sequences, followers, and KV copies
in both cache layouts, checked on a toy KV ledger (the end-to-end outputs are in
test_scheduler.py, test_kv_streams.py and test_recurrent_prefix_reuse.py)."""

from __future__ import annotations

import pytest

from allama.engine.prefix_cache import PrefixCache
from allama.engine.request import Request
from allama.engine.sequence import FOLLOWING, GENERATING, PREFILLING, Sequence, Submission
from allama.engine.session_slot import SessionSlot
from allama.state import LlamaState

from .toy_kv import ToyKV

PROMPT = list(range(100, 140))  # 40 tokens


def cache(kv: ToyKV, n_ids: int = 6, *, kv_unified: bool = True, recurrent: bool = False,
          min_shared_prefix: int = 16) -> PrefixCache:
    return PrefixCache(kv, n_ids, kv_unified=kv_unified, recurrent=recurrent, n_swa=0,
                       min_shared_prefix=min_shared_prefix)


def submission(prompt: list[int] = PROMPT, n: int = 1, **fields) -> Submission:
    return Submission(Request(prompt=list(prompt), chains=[object()] * n, **fields), None, None, 0)


def kept(prefix: PrefixCache, kv: ToyKV, tokens: list[int], lora: tuple = ()) -> int:
    seq_id = prefix.take_id()
    kv.held[seq_id] = len(tokens)
    prefix.keep(seq_id, tokens, lora)
    return seq_id


def running(prefix: PrefixCache, kv: ToyKV, tokens: list[int], n_past: int, phase: int = GENERATING) -> Sequence:
    seq = Sequence(Request(prompt=list(tokens), chains=[object()]), 0, None, None, prefix.take_id())
    seq.n_past, seq.phase = n_past, phase
    kv.held[seq.seq_id] = n_past
    return seq


def test_ids_are_taken_smallest_first_then_from_the_least_recently_kept():
    kv = ToyKV()
    prefix = cache(kv, n_ids=3)
    assert [prefix.take_id() for _ in range(3)] == [0, 1, 2]
    for seq_id in (2, 0):
        kv.held[seq_id] = 5
        prefix.keep(seq_id, [1] * 5, ())
    prefix.free(1)
    assert prefix.spare_ids == 3
    assert prefix.take_id() == 1
    assert prefix.take_id() == 2 and 2 not in kv.held  # the oldest kept one, its KV dropped
    assert list(prefix.kept) == [0]


def test_a_kept_sequence_is_taken_over_and_cut_to_the_shared_prefix():
    kv = ToyKV()
    prefix = cache(kv)
    other = kept(prefix, kv, list(range(500, 530)))
    best = kept(prefix, kv, PROMPT[:25] + [9, 9, 9])
    seq = prefix.start(submission(), [], [])
    assert (seq.seq_id, seq.n_past, seq.reused, seq.phase) == (best, 25, 25, PREFILLING)
    assert kv.held[best] == 25 and list(prefix.kept) == [other]
    assert prefix.tokens_reused == 25


def test_at_least_the_last_prompt_token_is_evaluated():
    kv = ToyKV()
    prefix = cache(kv)
    kept(prefix, kv, PROMPT + [7, 8])
    assert prefix.start(submission(), [], []).n_past == len(PROMPT) - 1


def test_kv_computed_with_other_lora_adapters_is_not_reused():
    kv = ToyKV()
    prefix = cache(kv)
    kept(prefix, kv, PROMPT, lora=(("adapter", 1.0),))
    seq = prefix.start(submission(), [], [])
    assert seq.n_past == 0 and len(prefix.kept) == 1


def test_scoring_the_prompt_reuses_nothing():
    kv = ToyKV()
    prefix = cache(kv)
    kept(prefix, kv, PROMPT)
    assert prefix.start(submission(prompt_logprobs=True), [], []).n_past == 0


def test_a_running_sequence_shares_its_evaluated_prefix():
    kv = ToyKV()
    prefix = cache(kv)
    other = running(prefix, kv, PROMPT[:30] + [1, 2], n_past=31)
    seq = prefix.start(submission(), [other], [])
    assert seq.n_past == 30 and kv.held[seq.seq_id] == 30
    assert ("cp", other.seq_id, seq.seq_id, 0, 30) in kv.calls


def test_at_equal_length_taking_a_kept_sequence_over_beats_copying_a_running_ones():
    kv = ToyKV()
    prefix = cache(kv)
    other = running(prefix, kv, PROMPT[:20], n_past=20)
    best = kept(prefix, kv, PROMPT[:20])
    seq = prefix.start(submission(), [other], [])
    assert seq.seq_id == best and seq.n_past == 20
    assert not [c for c in kv.calls if c[0] == "cp"]


def test_an_idle_sessions_prefix_is_shared_but_a_busy_ones_is_not():
    kv = ToyKV()
    prefix = cache(kv)
    slot = SessionSlot(prefix.take_id())
    slot.tokens = PROMPT[:12]
    kv.held[slot.seq_id] = 12
    assert prefix.start(submission(), [], [slot]).n_past == 12
    slot.busy = True
    assert prefix.start(submission(), [], [slot]).n_past == 0


def test_a_request_follows_another_that_is_evaluating_its_prefix():
    kv = ToyKV()
    prefix = cache(kv)
    leader = running(prefix, kv, PROMPT[:36], n_past=8, phase=PREFILLING)
    seq = prefix.start(submission(), [leader], [])
    assert seq.phase == FOLLOWING and seq.leader is leader and seq.target == 36
    assert seq.n_past == 8  # what the leader holds already is copied at once
    leader.n_past = 36
    kv.held[leader.seq_id] = 36
    rows = [(leader, 0)]
    prefix.activate_followers([leader, seq], rows)
    assert seq.phase == PREFILLING and seq.n_past == 36 and kv.held[seq.seq_id] == 36
    assert seq.reused == 36 and prefix.tokens_reused == 36 and rows == [(leader, 0)]


def test_a_short_shared_prefix_is_not_worth_waiting_for():
    kv = ToyKV()
    prefix = cache(kv, min_shared_prefix=16)
    leader = running(prefix, kv, PROMPT[:20], n_past=8, phase=PREFILLING)
    seq = prefix.start(submission(), [leader], [])
    assert seq.phase == PREFILLING and seq.n_past == 8


def test_choices_of_one_request_sample_from_the_leaders_last_prompt_row():
    kv = ToyKV()
    prefix = cache(kv)
    sub = submission(n=2, prompt_logprobs=True)
    leader = prefix.start(sub, [], [])
    follower = Sequence(sub.request, 1, None, None, prefix.take_id())
    follower.share_row = True
    prefix.follow(follower, leader, len(PROMPT))
    leader.n_past = len(PROMPT)
    leader.prompt_logprobs.append("scored")
    kv.held[leader.seq_id] = len(PROMPT)
    rows = [(leader, 39)]
    prefix.activate_followers([leader, follower], rows)
    assert rows == [(leader, 39), (follower, 39)]
    assert follower.phase == GENERATING and follower.n_past == len(PROMPT)
    assert follower.prompt_logprobs == [None, "scored"]
    assert follower.reused == 0  # the same request's prompt: not a cache hit


def test_a_leader_that_ends_early_hands_its_followers_what_it_holds():
    kv = ToyKV()
    prefix = cache(kv)
    leader = running(prefix, kv, PROMPT, n_past=16, phase=PREFILLING)
    seq = prefix.start(submission(), [leader], [])
    assert seq.phase == FOLLOWING and seq.n_past == 16
    leader.n_past = kv.held[leader.seq_id] = 24  # a step later, it ends (cancelled)
    prefix.release_followers(leader)
    assert seq.phase == PREFILLING and seq.leader is None and seq.n_past == 24
    assert leader.followers == []


def test_with_a_stream_per_sequence_a_prefix_is_a_whole_stream_copy_and_a_cut():
    kv = ToyKV()
    prefix = cache(kv, kv_unified=False)
    other = running(prefix, kv, PROMPT[:30] + [1, 2], n_past=32)
    seq = prefix.start(submission(), [other], [])
    assert kv.calls[-2:] == [("cp", other.seq_id, seq.seq_id, -1, -1), ("rm", seq.seq_id, 30, -1)]
    assert kv.held[seq.seq_id] == 30


def test_a_recurrent_state_is_shared_whole_or_not_at_all():
    kv = ToyKV()
    prefix = cache(kv, recurrent=True)
    kept(prefix, kv, PROMPT[:20] + [5])  # holds the state after a token the prompt does not have
    assert prefix.start(submission(), [], []).n_past == 0
    whole = kept(prefix, kv, PROMPT[:20])
    seq = prefix.start(submission(), [], [])
    assert seq.seq_id == whole and seq.n_past == 20


def test_a_cached_state_is_restored_when_it_gives_the_most():
    kv = ToyKV()
    prefix = cache(kv)
    kept(prefix, kv, PROMPT[:10])
    state = LlamaState.of_sequence(PROMPT[:30], (30).to_bytes(4, "little"), 0)
    seq = prefix.start(submission(restore=state), [], [])
    assert seq.n_past == 30 and kv.held[seq.seq_id] == 30
    assert prefix.tokens_restored == 30 and prefix.tokens_reused == 30


def test_loading_a_state_drops_kept_sequences_until_it_fits():
    kv = ToyKV(capacity=50)
    prefix = cache(kv)
    first = kept(prefix, kv, [1] * 20)
    second = kept(prefix, kv, [2] * 20)
    target = prefix.take_id()
    prefix.load(target, LlamaState.of_sequence([3] * 25, (25).to_bytes(4, "little"), 0))
    assert kv.held[target] == 25 and first not in kv.held and list(prefix.kept) == [second]


def test_a_state_that_does_not_fit_even_alone_is_refused():
    kv = ToyKV(capacity=10)
    prefix = cache(kv)
    with pytest.raises(ValueError, match="available cells"):
        prefix.load(prefix.take_id(), LlamaState.of_sequence([3] * 25, (25).to_bytes(4, "little"), 0))
