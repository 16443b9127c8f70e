"""`allama serve` in a subprocess, as users run it, and a streamed request read in a thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx

from tests.server.live_server import free_port

ENV = {**os.environ, "SKBUILD_EDITABLE_SKIP": "1"}


def start_server(model, *extra: str) -> tuple[subprocess.Popen, str]:
    """`allama serve` on a free port; returns it and its base URL once /health says ok."""
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
    """A streamed completion read in a thread; returns once 3 chunks came (or it ended)."""
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
