"""`allama serve` as a service manager runs it: the first SIGTERM/SIGINT stops accepting and
drains running requests, then the process exits 0; a second SIGINT exits at once; requests
past --drain-timeout are cancelled. Real subprocesses, real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.server.live_server import free_port

ENV = {**os.environ, "SKBUILD_EDITABLE_SKIP": "1"}


def start_server(model, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "allama", "serve", "--model", str(model), "--port", str(port),
                             "--n_ctx", "8192", "--n_parallel", "2", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the server did not start: {proc.communicate()[1][-2000:]}")


def stream_in_background(base: str, max_tokens: int) -> tuple[threading.Thread, dict]:
    result: dict = {"chunks": 0}

    def run() -> None:
        try:
            with httpx.stream("POST", base + "/v1/completions", timeout=60,
                              json={"prompt": "Hello", "max_tokens": max_tokens, "stream": True,
                                    "ignore_eos": True}) as response:
                result["status"] = response.status_code
                for line in response.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        result["chunks"] += 1
                        event = json.loads(line[6:])
                        if "error" in event:
                            result["error_event"] = event["error"]
                        choices = event.get("choices")
                        if choices and choices[0].get("finish_reason"):
                            result["finish_reason"] = choices[0]["finish_reason"]
                    if line == "data: [DONE]":
                        result["done"] = True
        except httpx.HTTPError as exc:
            result["error"] = repr(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while result["chunks"] < 3 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.02)
    return thread, result


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
