"""Thinking markers route text to reasoning_content, whole or streamed."""

from __future__ import annotations

from allama.chat.reasoning import ReasoningSplitter, split_reasoning, starts_in_thought


def test_reply_that_writes_its_own_thought():
    assert split_reasoning("<think>\nadd 2 and 2\n</think>\n\nIt is 4.", False) == ("add 2 and 2", "It is 4.")


def test_reply_that_starts_inside_an_opened_thought():
    assert starts_in_thought("<|im_start|>assistant\n<think>\n")
    assert not starts_in_thought("<think>old</think> answer")
    assert split_reasoning("hmm\n</think>\nDone", True) == ("hmm", "Done")


def test_plain_reply_has_no_reasoning():
    assert split_reasoning("Just text", False) == (None, "Just text")


def test_truncated_thought_is_all_reasoning():
    assert split_reasoning("<think>still going", False) == ("still going", "")


def test_streamed_markers_split_across_deltas_never_leak():
    splitter = ReasoningSplitter(False)
    parts = []
    for piece in ["<th", "ink>ab", "c</th", "ink>", " answer", "</thi"]:
        parts += splitter.feed(piece)
    parts += splitter.flush()
    reasoning = "".join(t for f, t in parts if f == "reasoning_content")
    content = "".join(t for f, t in parts if f == "content")
    assert reasoning == "abc"
    assert content == " answer</thi"
    assert not any("<think>" in t or "</think>" in t for _, t in parts)
