"""What a sequence decodes of a draft model's proposal, and how its cap follows acceptance."""

from __future__ import annotations

import numpy as np

from allama.engine.speculation import DRAFT_CAP_MAX, next_cap, proposal


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
