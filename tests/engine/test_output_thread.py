"""OutputThread: one job at a time beside the decode thread; its errors reach the waiter."""

from __future__ import annotations

import threading
import time

import pytest

from allama.engine.output_thread import OutputThread


@pytest.fixture
def worker():
    thread = OutputThread()
    yield thread
    thread.stop(timeout=5)


def test_a_job_runs_on_the_thread_while_the_caller_goes_on(worker):
    ran_on: list[str] = []
    release = threading.Event()

    def job():
        release.wait(5)
        ran_on.append(threading.current_thread().name)

    worker.start(job)
    assert ran_on == []  # start() did not wait for the job
    release.set()
    worker.wait()
    assert ran_on == ["allama-outputs"]


def test_wait_returns_only_once_the_job_has_ended(worker):
    done = []
    worker.start(lambda: (time.sleep(0.2), done.append(1)))
    worker.wait()
    assert done == [1]


def test_the_jobs_error_is_raised_by_wait_once(worker):
    def job():
        raise KeyError("boom")

    worker.start(job)
    with pytest.raises(KeyError, match="boom"):
        worker.wait()
    worker.wait()  # nothing pending: returns at once
    worker.start(lambda: None)
    worker.wait()  # the thread survived the error


def test_stop_ends_the_thread():
    worker = OutputThread()
    worker.start(lambda: None)
    worker.wait()
    worker.stop(timeout=5)
    assert not worker._thread.is_alive()
