"""Logits processors and stopping criteria: llama-cpp-python's list classes, plain lists of
callables, and MinTokensLogitsProcessor."""

from __future__ import annotations

import numpy as np
import pytest

import allama
from allama import (
    LogitsProcessorList,
    MinTokensLogitsProcessor,
    StoppingCriteriaList,
)
from allama.logits_processing import as_logits_processor, as_stopping_criteria

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def llm_options():
    return dict(n_ctx=256, n_parallel=2, n_threads=1, n_threads_batch=1)


def favour(token: int):
    """A processor that makes `token` the only candidate."""

    def processor(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        scores[:] = -np.inf
        scores[token] = 0.0
        return scores

    return processor


def test_the_names_are_public_as_in_llama_cpp_python():
    for name in ("LogitsProcessor", "LogitsProcessorList", "MinTokensLogitsProcessor", "StoppingCriteria",
                 "StoppingCriteriaList"):
        assert name in allama.__all__ and hasattr(allama, name)
    assert issubclass(LogitsProcessorList, list) and issubclass(StoppingCriteriaList, list)


def test_a_processor_list_applies_its_processors_in_order():
    seen = []

    def add(k):
        def processor(ids, scores):
            seen.append(k)
            return scores + k
        return processor

    out = LogitsProcessorList([add(1), add(10)])(np.array([1], dtype=np.intc), np.zeros(3, dtype=np.float32))
    assert seen == [1, 10] and out.tolist() == [11.0, 11.0, 11.0]


def test_a_criteria_list_stops_when_any_criterion_does():
    ids, logits = np.array([1, 2], dtype=np.intc), np.zeros(3, dtype=np.float32)
    assert StoppingCriteriaList([lambda i, s: False, lambda i, s: len(i) == 2])(ids, logits)
    assert not StoppingCriteriaList([lambda i, s: False])(ids, logits)
    assert not StoppingCriteriaList()(ids, logits)


def test_min_tokens_masks_eos_until_enough_tokens_were_generated():
    processor = MinTokensLogitsProcessor(2, token_eos=0)
    prompt = np.arange(5, dtype=np.intc)
    assert processor(prompt, np.zeros(3, dtype=np.float32))[0] == -np.inf
    assert processor(np.arange(6, dtype=np.intc), np.zeros(3, dtype=np.float32))[0] == -np.inf
    assert processor(np.arange(7, dtype=np.intc), np.zeros(3, dtype=np.float32))[0] == 0.0


def test_plain_lists_become_callables_and_bad_items_are_refused():
    assert as_logits_processor(None) is None and as_logits_processor([]) is None
    assert as_stopping_criteria(LogitsProcessorList()) is None
    assert isinstance(as_logits_processor([favour(1)]), LogitsProcessorList)
    assert isinstance(as_stopping_criteria((lambda i, s: True,)), StoppingCriteriaList)
    with pytest.raises(TypeError, match=r"logits_processor\[1\] must be callable"):
        as_logits_processor([favour(1), 3])
    with pytest.raises(TypeError, match="stopping_criteria must be callable"):
        as_stopping_criteria("stop")


async def test_a_plain_list_of_two_processors_runs_both_in_order(llm):
    first, second = llm.tokenize(b"hello world", add_bos=False)[:2]
    calls = []

    def record(ids, scores):
        calls.append(int(np.argmax(scores)))
        return scores

    out = await llm.create_completion("Hello", max_tokens=3, temperature=0,
                                      logits_processor=[favour(first), record, favour(second)])
    assert calls == [first] * 3  # the second processor saw the first one's scores
    assert out["usage"]["completion_tokens"] == 3
    assert out["choices"][0]["text"] == llm.detokenize([second] * 3).decode()


async def test_min_tokens_suppresses_eos_until_min_tokens(llm):
    eos = llm.token_eos()
    other = llm.tokenize(b"hello", add_bos=False)[0]

    def prefer_eos(ids, scores):
        scores[:] = -np.inf
        scores[eos] = 10.0  # EOS is the favourite at every step
        scores[other] = 5.0
        return scores

    unconstrained = await llm.create_completion("Hi", max_tokens=10, temperature=0,
                                                logits_processor=LogitsProcessorList([prefer_eos]))
    assert unconstrained["usage"]["completion_tokens"] == 0
    out = await llm.create_completion(
        "Hi", max_tokens=10, temperature=0,
        logits_processor=LogitsProcessorList([prefer_eos, MinTokensLogitsProcessor(4, eos)]))
    assert out["usage"]["completion_tokens"] == 4
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["choices"][0]["text"] == llm.detokenize([other] * 4).decode()


async def test_a_plain_list_of_stopping_criteria_stops_on_any(llm):
    seen = []

    def count(ids, logits):
        seen.append(len(ids))
        return False

    out = await llm.create_completion("Hello", max_tokens=10, temperature=0,
                                      stopping_criteria=[count, lambda ids, logits: len(seen) >= 2])
    assert out["usage"]["completion_tokens"] == 2 and out["choices"][0]["finish_reason"] == "stop"
