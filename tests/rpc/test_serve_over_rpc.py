"""`allama serve --rpc a,b`: the server's model split over two workers; when one is lost the
running streams end with an error event, /health turns 503 naming the worker, and new
requests get a 503 `worker_lost` error. The server itself stays up and stops cleanly."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.server.server_process import start_server, stream_in_background

from .workers import HOST_KINDS, hosts, worker


@pytest.mark.parametrize("host_kind", HOST_KINDS)
def test_the_server_reports_a_lost_worker(llama_f32_path: Path, host_kind: str, tmp_path: Path) -> None:
    with hosts(host_kind, 2) as (host_a, host_b), worker(host_a, tmp_path) as a, worker(host_b, tmp_path) as b:
        proc, base = start_server(llama_f32_path, "--rpc", f"{a.endpoint},{b.endpoint}")
        try:
            models = httpx.get(base + "/v1/models", timeout=10).json()["data"]
            thread, result = stream_in_background(base, max_tokens=8000)
            assert result["chunks"] >= 3, result
            b.kill()
            thread.join(timeout=30)
            assert not thread.is_alive()
            assert result["status"] == 200 and "finish_reason" not in result, result
            assert b.endpoint in result["error_event"]["message"], result

            health = httpx.get(base + "/health", timeout=10)
            assert health.status_code == 503
            assert health.json()["status"] == "error"
            assert b.endpoint in health.json()["errors"][models[0]["id"]]

            later = httpx.post(base + "/v1/completions", json={"prompt": "Hello", "max_tokens": 4}, timeout=10)
            assert later.status_code == 503
            assert later.json()["error"]["code"] == "worker_lost"
            assert b.endpoint in later.json()["error"]["message"]
        finally:
            proc.terminate()
            exit_code = proc.wait(timeout=30)
            stderr = proc.stderr.read() if proc.stderr else ""
    assert exit_code == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
