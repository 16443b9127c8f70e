"""A long text prompt is tokenized in a worker thread, so that the event loop's other streams
do not wait for it; a short one on the loop, where a thread hop would cost more than it saves."""

from __future__ import annotations

import threading

import pytest

from allama import Llama
from allama.errors import ContextOverflowError
from allama.llama_prompts import LONG_TEXT_BYTES

pytestmark = pytest.mark.anyio


@pytest.fixture
def tokenizing_threads(monkeypatch) -> list[int]:
    """The thread of every Llama.tokenize call from now on."""
    threads: list[int] = []
    original = Llama.tokenize

    def recording(self, text, add_bos=True, special=False):
        threads.append(threading.get_ident())
        return original(self, text, add_bos, special)

    monkeypatch.setattr(Llama, "tokenize", recording)
    return threads


async def test_a_long_completion_prompt_is_tokenized_off_the_event_loop(llm, tokenizing_threads):
    loop_thread = threading.get_ident()
    await llm.create_completion("A short prompt", max_tokens=1)
    assert tokenizing_threads == [loop_thread]
    with pytest.raises(ContextOverflowError):  # (far beyond n_ctx: refused once tokenized)
        await llm.create_completion("word " * (LONG_TEXT_BYTES // 5 + 1), max_tokens=1)
    assert len(tokenizing_threads) == 2 and tokenizing_threads[1] != loop_thread


async def test_a_long_chat_is_tokenized_off_the_event_loop(llm, tokenizing_threads):
    loop_thread = threading.get_ident()
    await llm.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=1)
    assert tokenizing_threads and set(tokenizing_threads) == {loop_thread}
    tokenizing_threads.clear()
    with pytest.raises(ContextOverflowError):
        await llm.create_chat_completion([{"role": "user", "content": "word " * (LONG_TEXT_BYTES // 5 + 1)}],
                                         max_tokens=1)
    assert tokenizing_threads and loop_thread not in tokenizing_threads
