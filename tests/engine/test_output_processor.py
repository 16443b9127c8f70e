"""OutputProcessor: sampled tokens to text deltas, stops, finish reasons, logprobs and usage,
checked against a toy vocabulary (no model: the rules are the engine's own)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from allama.engine.output_processor import OutputProcessor, token_logprob
from allama.engine.request import Request
from allama.engine.sequence import Sequence, Submission

EOG = 0
PIECES = {1: b"Hel", 2: b"lo", 3: b" wor", 4: b"ld", 5: b"\xe2\x82", 6: b"\xac", 7: b"EN", 8: b"D"}


class ToyVocab:
    eog_tokens = [EOG]

    def is_eog(self, token: int) -> bool:
        return token == EOG

    def token_to_piece(self, token: int) -> bytes:
        return PIECES[token]


class ToyContext:
    """Row r's logits: log-probabilities that favour token r % 4."""

    def logits(self, row: int) -> np.ndarray:
        out = np.zeros(9, dtype=np.float32)
        out[row % 4] = 3.0
        return out


def sequence(index: int = 0, **fields) -> Sequence:
    request = Request(prompt=[1, 2], chains=[object()] * max(index + 1, fields.pop("n", 1)), **fields)
    return Sequence(request, index, sink=None, loop=None, seq_id=index)


def run(processor: OutputProcessor, seq: Sequence, tokens: list[int]) -> tuple[list[str], str | None]:
    texts = []
    for token in tokens:
        out, finish = processor.accept(seq, 0, token)
        texts.append(out.text)
        if finish is not None:
            return texts, finish
    return texts, None


@pytest.fixture
def processor() -> OutputProcessor:
    return OutputProcessor(ToyContext(), ToyVocab(), n_ctx=64)


def test_text_deltas_wait_for_a_whole_character(processor):
    seq = sequence()
    assert run(processor, seq, [1, 2, 5, 6]) == (["Hel", "lo", "", "€"], None)
    assert seq.tokens == [1, 2, 1, 2, 5, 6] and seq.generated == 4


def test_a_stop_string_ends_the_sequence_and_its_text_never_goes_out(processor):
    seq = sequence(stop=["END"])
    texts, finish = run(processor, seq, [1, 7, 8, 2])
    assert finish == "stop"
    assert "".join(texts) == "Hel"  # "EN" was held back, then "END" matched


def test_text_held_back_for_a_stop_that_never_came_is_flushed_at_the_end(processor):
    seq = sequence(stop=["ENDS"], max_tokens=3)
    texts, finish = run(processor, seq, [1, 7, 8])
    assert finish == "length" and "".join(texts) == "Hel"
    final = processor.final(seq, None, None, finish, None, None)
    assert final.text == "END" and final.finish_reason == "length"


def test_the_end_of_generation_token_is_neither_text_nor_a_completion_token(processor):
    seq = sequence()
    run(processor, seq, [1])
    out, finish = processor.accept(seq, 0, EOG)
    assert finish == "stop" and out.tokens == [] and out.text == ""
    assert seq.generated == 1


def test_ignore_eos_treats_it_as_a_token(processor):
    PIECES[EOG] = b"</s>"
    try:
        seq = sequence(ignore_eos=True)
        out, finish = processor.accept(seq, 0, EOG)
        assert finish is None and out.tokens == [EOG] and out.text == "</s>"
    finally:
        del PIECES[EOG]


def test_the_window_ends_a_sequence_with_length():
    processor = OutputProcessor(ToyContext(), ToyVocab(), n_ctx=4)
    assert run(processor, sequence(), [1, 2, 3]) == (["Hel", "lo"], "length")


def test_stopping_criteria_see_every_token_and_the_rows_logits(processor):
    seen = []

    def criteria(ids: np.ndarray, logits: np.ndarray) -> bool:
        seen.append((ids.tolist(), int(np.argmax(logits))))
        return len(ids) == 4

    seq = sequence(stopping_criteria=criteria)
    assert run(processor, seq, [3, 4]) == ([" wor", "ld"], "stop")
    assert seen == [([1, 2, 3], 0), ([1, 2, 3, 4], 0)]


def test_a_failing_callback_raises_for_the_scheduler_to_end_that_request(processor):
    seq = sequence(stopping_criteria=lambda ids, logits: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        processor.accept(seq, 0, 1)


def test_a_custom_tokenizer_gets_the_preceding_tokens_without_media_ids():
    calls = []

    class Tokenizer:
        def detokenize(self, tokens, prev_tokens=None):
            calls.append((tokens, prev_tokens))
            return b"x"

    processor = OutputProcessor(ToyContext(), ToyVocab(), n_ctx=64, tokenizer=Tokenizer())
    seq = sequence()
    seq.tokens = [-5, 1, 2]
    assert processor.accept(seq, 0, 3)[0].text == "x"
    assert calls == [([3], [1, 2])]


def test_logprobs_are_a_log_softmax_with_the_top_alternatives(processor):
    seq = sequence(logprobs=2)
    out, _ = processor.accept(seq, 1, 1)  # row 1 favours token 1
    lp = out.logprobs[0]
    expected = 3.0 - math.log(math.exp(3.0) + 8)
    assert lp.token == 1 and lp.logprob == pytest.approx(expected, abs=1e-6)
    assert list(lp.top)[0] == 1 and len(lp.top) == 2
    assert seq.logprobs == [lp]


def test_every_choice_of_a_request_collects_logprobs():
    assert sequence(index=1, n=2, logprobs=0).logprobs == []


def test_prompt_scoring_gives_each_following_prompt_token_its_logprob(processor):
    request = Request(prompt=[1, 2, 3, 0], chains=[object()], prompt_logprobs=True)
    seq = Sequence(request, 0, None, None, 0)
    seq.n_past = 3  # rows 0..2 decoded prompt positions 0..2
    processor.score_prompt(seq, 0, 0)
    assert [p.token if p else None for p in seq.prompt_logprobs] == [None, 2, 3, 0]
    assert seq.prompt_logprobs[1].logprob == pytest.approx(token_logprob(ToyContext().logits(0), 2, 0).logprob)


def test_usage_comes_with_the_last_sequence_of_a_request_to_end(processor):
    request = Request(prompt=[1, 2], chains=[object(), object()])
    submission = Submission(request, None, None, 0)
    first, second = (Sequence(request, i, None, None, i) for i in range(2))
    submission.sequences = [first, second]
    first.reused = 1
    run(processor, first, [1, 2])
    run(processor, second, [3])
    submission.finished = 1
    assert processor.final(first, submission, None, "stop", None, None).usage is None
    submission.finished = 2
    usage = processor.final(second, submission, None, "length", None, None).usage
    assert usage == {"prompt_tokens": 2, "completion_tokens": 3, "cached_tokens": 1}


def test_a_failed_sequence_ends_with_its_error_and_no_finish_reason(processor):
    error = RuntimeError("boom")
    out = processor.final(sequence(), None, None, None, error, None)
    assert out.error is error and out.finish_reason is None


def deferred_run(processor: OutputProcessor, seq: Sequence, tokens: list[int]) -> tuple[list[str], str | None]:
    """run(), taking each token the deferred way where can_defer() allows it."""
    texts = []
    for token in tokens:
        if processor.can_defer(seq, token):
            processor.append(seq, token)
            out, finish = processor.deferred_output(seq, token)
        else:
            out, finish = processor.accept(seq, 0, token)
        texts.append(out.text)
        if finish is not None:
            return texts, finish
    return texts, None


@pytest.mark.parametrize("fields, tokens", [
    ({}, [1, 2, 5, 6, 3, 4]),
    ({"stop": ["lo w"]}, [1, 2, 3, 4]),
    ({"stop": ["€"]}, [1, 5, 6, 2]),
    ({"max_tokens": 3}, [1, 2, 3, 4]),
    ({}, [1, 2, EOG, 3]),
    ({"ignore_eos": True, "max_tokens": 4}, [1, EOG, 2, 3, 4]),
])
def test_deferred_tokens_give_the_outputs_and_finish_of_accept(processor, fields, tokens, monkeypatch):
    monkeypatch.setitem(PIECES, EOG, b"</s>")  # text only where ignore_eos makes it a token
    assert deferred_run(processor, sequence(**fields), tokens) == run(processor, sequence(**fields), tokens)


def test_a_token_that_ends_its_sequence_whatever_its_text_is_not_deferred(processor):
    assert not processor.can_defer(sequence(), EOG)
    assert processor.can_defer(sequence(ignore_eos=True), EOG)
    seq = sequence(max_tokens=2)
    assert processor.can_defer(seq, 1)
    processor.append(seq, 1)
    assert not processor.can_defer(seq, 2)  # the token limit
    full = sequence()
    full.tokens = [1] * 63
    assert not OutputProcessor(ToyContext(), ToyVocab(), n_ctx=64).can_defer(full, 1)  # the window's last token


@pytest.mark.parametrize("fields", [{"logprobs": 0}, {"stopping_criteria": lambda ids, logits: False}])
def test_a_token_whose_logits_are_read_is_not_deferred(processor, fields):
    """Logprobs and stopping criteria read this step's logits, which the next decode replaces."""
    assert not processor.can_defer(sequence(**fields), 1)
