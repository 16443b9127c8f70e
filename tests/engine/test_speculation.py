"""What a sequence decodes of a draft model's proposal, how its cap follows acceptance, and how
the decoded proposal is verified."""

from __future__ import annotations

from collections import Counter

import numpy as np

from allama.engine import speculation
from allama.engine.request import Request
from allama.engine.sequence import GENERATING, Sequence
from allama.engine.speculation import DRAFT_CAP_MAX, Speculator, next_cap, proposal

from .toy_kv import ToyKV


def test_a_proposal_is_cut_to_the_limit_and_to_valid_ids():
    assert proposal(lambda ids: np.array([5, 6, 7, 8]), [1, 2], 3, 100) == [5, 6, 7]
    assert proposal(lambda ids: np.array([5, -1, 7]), [1], 10, 100) == [5]       # a media placeholder
    assert proposal(lambda ids: np.array([5, 100, 7]), [1], 10, 100) == [5]      # outside the vocabulary
    assert proposal(lambda ids: np.array([], np.intc), [1], 10, 100) is None


def test_a_failing_draft_model_proposes_nothing(caplog):
    def broken(ids):
        raise RuntimeError("boom")

    assert proposal(broken, [1, 2], 4, 100) is None
    assert "draft model failed" in caplog.text


def test_the_cap_doubles_on_full_acceptance_and_falls_after_a_refusal():
    assert next_cap(4, 4, 4) == 8
    assert next_cap(DRAFT_CAP_MAX, DRAFT_CAP_MAX, DRAFT_CAP_MAX) == DRAFT_CAP_MAX
    assert next_cap(8, 8, 3) == 4
    assert next_cap(8, 8, 0) == 1


# --- Speculator: proposals cut to what may still be generated, verification against the
# sequence's own samples (row -> what its sampler gives), on a toy KV ledger

EOG = 0


class ToyContext(ToyKV):
    n_vocab = 100


class ToyVocab:
    def is_eog(self, token: int) -> bool:
        return token == EOG


def speculator(draft_model=None, n_ctx: int = 64) -> Speculator:
    return Speculator(ToyContext(), ToyVocab(), n_ctx, draft_model, Counter())


def generating(tokens: list[int], **fields) -> Sequence:
    seq = Sequence(Request(prompt=list(tokens), chains=[object()], **fields), 0, None, None, 0)
    seq.n_past, seq.phase = len(tokens) - 1, GENERATING
    return seq


def test_a_proposal_is_cut_to_the_budget_the_cap_the_window_and_max_tokens():
    spec = speculator(lambda ids: list(range(1, 50)), n_ctx=20)
    assert spec.propose(generating([5] * 4), budget=3) == [1, 2, 3]
    assert spec.propose(generating([5] * 4), budget=10) == [1, 2, 3, 4]          # the cap starts at 4
    assert spec.propose(generating([5] * 17), budget=10) == [1, 2]                # the window: 20 - 17 - 1
    seq = generating([5] * 4, max_tokens=5)
    seq.generated = 2
    assert spec.propose(seq, budget=10) == [1, 2]                                 # 5 - 2 - 1 may follow
    seq.generated = 4
    assert spec.propose(seq, budget=10) is None
    assert spec.propose(generating([5] * 4, logits_processor=lambda ids, x: x), budget=10) is None


def verify(spec: Speculator, seq: Sequence, proposed: list[int], samples: list, monkeypatch,
           goes_on: int = 99) -> list[tuple[int, object, int]]:
    """Runs verify with the sampler giving samples[row]; returns (row, token, n_past) per accept."""
    monkeypatch.setattr(speculation._native, "sample_batch", lambda ctx, jobs: [samples[jobs[0][1]]])
    accepted: list[tuple[int, object, int]] = []

    def accept(s: Sequence, row: int, result) -> bool:
        accepted.append((row, result, s.n_past))
        return len(accepted) < goes_on

    seq.n_past += 1  # the decode evaluated the sequence's last token and put the proposal after it
    spec.ctx.held[seq.seq_id] = seq.n_past + len(proposed)
    spec.verify(seq, 0, proposed, accept)
    return accepted


def test_a_proposal_confirmed_whole_emits_it_and_the_next_sample_and_doubles_the_cap(monkeypatch):
    spec, seq = speculator(), generating([1, 2, 3])
    assert verify(spec, seq, [5, 6], [5, 6, 9], monkeypatch) == [(0, 5, 3), (1, 6, 4), (2, 9, 5)]
    assert spec.ctx.held[0] == 5 and seq.draft_cap == 8 and not seq.drafted
    assert (spec.counters["draft_tokens"], spec.counters["draft_tokens_accepted"]) == (2, 2)


def test_a_refused_token_ends_the_proposal_and_its_kv_is_dropped(monkeypatch):
    spec, seq = speculator(), generating([1, 2, 3])
    assert verify(spec, seq, [5, 6, 7], [5, 8, 9, 9], monkeypatch) == [(0, 5, 3), (1, 8, 4)]
    assert spec.ctx.held[0] == 4 and seq.draft_cap == 2  # positions 0..3: the prompt and the confirmed 5
    assert (spec.counters["draft_tokens"], spec.counters["draft_tokens_accepted"]) == (3, 1)


def test_an_end_of_generation_or_a_sampling_error_ends_the_verification(monkeypatch):
    spec, seq = speculator(), generating([1, 2, 3])
    assert [r[1] for r in verify(spec, seq, [EOG, 6], [EOG, 6, 9], monkeypatch)] == [EOG]
    error = ValueError("grammar")
    spec, seq = speculator(), generating([1, 2, 3])
    assert [r[1] for r in verify(spec, seq, [5, 6], [5, error, 9], monkeypatch)] == [5, error]


def test_a_sequence_that_ends_inside_the_proposal_stays_marked_drafted(monkeypatch):
    spec, seq = speculator(), generating([1, 2, 3])
    assert len(verify(spec, seq, [5, 6], [5, 6, 9], monkeypatch, goes_on=1)) == 1
    assert seq.drafted and seq.n_past == 3  # finishing it cuts the KV beyond n_past
