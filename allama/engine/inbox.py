"""What event loops hand the decode thread: the only state the two sides share, under one lock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from allama.engine.embedding import EmbedRequest
from allama.engine.engine_call import EngineCall
from allama.engine.loop_handle import LoopHandle
from allama.engine.output_sink import OutputSink
from allama.engine.request import Request
from allama.engine.sequence import Submission
from allama.errors import EngineClosedError, QueueFullError

Embedding = tuple[EmbedRequest, OutputSink, LoopHandle]


@dataclass
class Mail:
    """Everything posted since the decode thread last looked."""

    submissions: list[Submission] = field(default_factory=list)
    embeddings: list[Embedding] = field(default_factory=list)
    cancels: list[int] = field(default_factory=list)   # request ids
    calls: list[EngineCall] = field(default_factory=list)
    closing: bool = False


# What take() returns when nothing was posted and the decode thread has work: shared, never
# changed (the decode thread only reads mail).
NO_MAIL = Mail()


class Inbox:
    """Posting never blocks on the decode thread's work: it appends under a lock and wakes it."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue  # requests that may wait beyond the free sequence slots
        self._lock = threading.Condition()
        self._mail = Mail()
        self._posted = False  # anything in the mail (or closing): set under the lock, read without
        self._closing = False
        self._queued = 0  # requests posted and not yet admitted (in the mail or waiting)
        self._activating = 0  # sequences of a request being admitted: active, and still queued
        self._order = 0

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def queued(self) -> int:
        return self._queued

    def submit(self, request: Request, sink: OutputSink, loop: LoopHandle, free_slots: Callable[[], int]) -> None:
        """Posts a request; EngineClosedError once closed, QueueFullError when max_queue requests
        wait beyond the `free_slots()` that will take requests at once (read under the lock, so
        that a request the decode thread is admitting counts as queued, not also as active)."""
        with self._lock:
            if self._closing:
                raise EngineClosedError("the model is closed")
            if self._queued >= self.max_queue + max(0, free_slots() + self._activating):
                raise QueueFullError(f"the request queue is full ({self.max_queue} waiting)")
            self._order += 1
            self._mail.submissions.append(Submission(request, sink, loop, self._order))
            self._queued += 1
            self._posted = True
            self._lock.notify()

    def submit_embedding(self, embedding: Embedding) -> None:
        with self._lock:
            if self._closing:
                raise EngineClosedError("the model is closed")
            self._mail.embeddings.append(embedding)
            self._posted = True
            self._lock.notify()

    def cancel(self, request_id: int) -> None:
        with self._lock:
            self._mail.cancels.append(request_id)
            self._posted = True
            self._lock.notify()

    def call(self, job: EngineCall) -> None:
        with self._lock:
            if self._closing:
                raise EngineClosedError("the model is closed")
            self._mail.calls.append(job)
            self._posted = True
            self._lock.notify()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._posted = True
            self._lock.notify()

    def mark_closing(self) -> None:
        """close() without the lock: in a child made by fork(), where it may have been copied held."""
        self._closing = True
        self._posted = True

    def take(self, idle: Callable[[], bool]) -> Mail:
        """The decode thread: waits while nothing was posted and `idle()` holds, then takes the mail.

        Between two steps of running requests nothing has usually been posted: that case reads
        one flag and takes no lock (a post it misses is taken at the next step)."""
        if not self._posted and not idle():
            return NO_MAIL
        with self._lock:
            mail = self._mail
            while idle() and not (mail.submissions or mail.embeddings or mail.cancels or mail.calls
                                  or self._closing):
                self._lock.wait()
            self._mail = Mail()
            self._posted = self._closing  # (closing stays posted: every later take sees it)
            mail.closing = self._closing
            return mail

    def admitting(self, n_sequences: int) -> None:
        """The decode thread starts a queued request's `n_sequences` sequences: until admitted(),
        they take no free slot from a submission's point of view."""
        with self._lock:
            self._activating = n_sequences

    def admitted(self, n: int = 1) -> None:
        """`n` queued requests left the queue (admitted, cancelled or failed while waiting)."""
        with self._lock:
            self._queued -= n
            self._activating = 0

    def drain(self) -> Mail:
        """At shutdown: what was posted and not yet taken; nothing is queued any more."""
        with self._lock:
            mail, self._mail = self._mail, Mail()
            self._posted = self._closing
            self._queued = 0
            return mail
