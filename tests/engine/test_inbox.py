"""Inbox: posting from event loops never waits for the decode thread, and what is posted
reaches it whole, once."""

from __future__ import annotations

import threading
import time

import pytest

from allama.engine.engine_call import EngineCall
from allama.engine.inbox import Inbox
from allama.engine.request import Request
from allama.errors import EngineClosedError, QueueFullError


def request() -> Request:
    return Request(prompt=[1], chains=[object()])


def test_take_waits_for_a_post_while_idle_and_returns_everything_once():
    inbox = Inbox(max_queue=4)
    got = []
    taker = threading.Thread(target=lambda: got.append(inbox.take(lambda: True)))
    taker.start()
    time.sleep(0.05)
    assert taker.is_alive()  # idle and nothing posted: it waits
    inbox.submit(request(), None, None, free_slots=lambda: 0)
    taker.join(2)
    assert not taker.is_alive() and len(got[0].submissions) == 1
    inbox.cancel(7)
    mail = inbox.take(lambda: False)
    assert mail.submissions == [] and mail.cancels == [7]
    assert inbox.take(lambda: False).cancels == []


def test_requests_queue_up_to_max_queue_beyond_the_free_slots():
    inbox = Inbox(max_queue=2)
    for _ in range(3):
        inbox.submit(request(), None, None, free_slots=lambda: 1)
    with pytest.raises(QueueFullError, match=r"queue is full \(2 waiting\)"):
        inbox.submit(request(), None, None, free_slots=lambda: 1)
    inbox.admitted(2)
    assert inbox.queued == 1
    inbox.submit(request(), None, None, free_slots=lambda: 0)


def test_submissions_keep_their_arrival_order():
    inbox = Inbox(max_queue=4)
    for _ in range(3):
        inbox.submit(request(), None, None, free_slots=lambda: 0)
    orders = [s.order for s in inbox.take(lambda: False).submissions]
    assert orders == sorted(orders) and len(set(orders)) == 3


def test_after_close_posting_fails_and_take_reports_closing():
    inbox = Inbox(max_queue=4)
    inbox.submit(request(), None, None, free_slots=lambda: 0)
    inbox.close()
    for post in (lambda: inbox.submit(request(), None, None, lambda: 0), lambda: inbox.submit_embedding((None, None, None)),
                 lambda: inbox.call(EngineCall(lambda: None, None))):
        with pytest.raises(EngineClosedError):
            post()
    mail = inbox.take(lambda: True)  # closing wakes it even when idle
    assert mail.closing and len(mail.submissions) == 1
    assert inbox.drain().submissions == [] and inbox.queued == 0


def test_a_request_being_admitted_takes_no_free_slot_from_a_submission():
    # n_parallel 1, max_queue 1: one request runs, one waits. While the decode thread admits
    # the first, it is already active (no free slot) and still queued: counted twice, the
    # second submission would be refused.
    inbox = Inbox(max_queue=1)
    active: list[int] = []
    free_slots = lambda: 1 - len(active)  # noqa: E731
    inbox.submit(request(), None, None, free_slots)
    inbox.admitting(1)
    active.append(1)
    inbox.submit(request(), None, None, free_slots)  # queued 2 (one of them being admitted), free 0 + 1
    inbox.admitted()
    assert inbox.queued == 1
    with pytest.raises(QueueFullError):
        inbox.submit(request(), None, None, free_slots)


def test_a_busy_take_with_nothing_posted_takes_no_lock_and_misses_nothing():
    inbox = Inbox(max_queue=4)
    inbox._lock = None  # any use of the lock would fail: nothing posted and busy reads a flag only
    mail = inbox.take(lambda: False)
    assert not (mail.submissions or mail.embeddings or mail.cancels or mail.calls or mail.closing)
    inbox._lock = threading.Condition()
    inbox.cancel(3)
    assert inbox.take(lambda: False).cancels == [3]  # a post sets the flag: the next take has it
    assert inbox.take(lambda: False).cancels == []


def test_closing_is_seen_by_every_take_after_it():
    inbox = Inbox(max_queue=4)
    inbox.close()
    assert inbox.take(lambda: False).closing
    assert inbox.take(lambda: False).closing  # not only by the first
