"""`allama serve` as a service manager runs it: the first SIGTERM/SIGINT stops accepting and
drains running requests, then the process exits 0; a second SIGINT exits at once; requests
past --drain-timeout are cancelled. Real subprocesses, real HTTP on 127.0.0.1."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.server.server_process import start_server, stream_in_background


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_drains_running_requests_and_exits_0(llama_f32_path, sig):
    proc, base = start_server(llama_f32_path)
    thread, result = stream_in_background(base, max_tokens=300)
    proc.send_signal(sig)
    time.sleep(0.3)
    with pytest.raises(httpx.TransportError):  # no new connections while draining
        httpx.get(base + "/health", timeout=2)
    thread.join(60)
    out, err = proc.communicate(timeout=60)
    assert result.get("done") and result.get("finish_reason") == "length", result  # ran its 300 tokens
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err


def test_requests_past_the_drain_timeout_are_cancelled_and_exit_is_0(llama_f32_path):
    proc, base = start_server(llama_f32_path, "--drain-timeout", "1")
    thread, result = stream_in_background(base, max_tokens=8000)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 10
    thread.join(10)
    assert result.get("error_event", {}).get("code") == "shutting_down", result  # told, not cut off
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "terminate called" not in err


def test_a_second_sigint_exits_at_once(llama_f32_path):
    proc, base = start_server(llama_f32_path)
    thread, result = stream_in_background(base, max_tokens=8000)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 5
    assert proc.returncode == 130, err[-2000:]
    assert "terminate called" not in err
