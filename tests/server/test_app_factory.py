"""`uvicorn --factory allama.server.app:create_app`: with no arguments the app reads its
settings from the environment (MODEL=..., N_CTX=...) or from the CONFIG_FILE it names, as
llama-cpp-python's create_app does."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from .live_server import free_port


def _serve_factory(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "allama.server.app:create_app",
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.kill()
    output = server.communicate(timeout=10)[0].decode(errors="replace")
    raise AssertionError(f"the factory app did not become ready:\n{output[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.mark.timeout(120)
def test_create_app_reads_the_model_from_the_environment(llama_f32_path):
    server, base = _serve_factory({"MODEL": str(llama_f32_path), "MODEL_ALIAS": "env-model", "N_CTX": "256"})
    try:
        assert [m["id"] for m in httpx.get(base + "/v1/models").json()["data"]] == ["env-model"]
        out = httpx.post(base + "/v1/completions", json={"prompt": "hi", "max_tokens": 3}, timeout=60).json()
        assert out["usage"]["completion_tokens"] == 3
    finally:
        _stop(server)


@pytest.mark.timeout(120)
def test_create_app_reads_the_config_file_named_by_config_file(llama_f32_path, llama_f16_path, tmp_path):
    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump({"models": [{"model": str(llama_f32_path), "model_alias": "one", "n_ctx": 256},
                                                 {"model": str(llama_f16_path), "model_alias": "two", "n_ctx": 256}]}))
    server, base = _serve_factory({"CONFIG_FILE": str(config), "MODEL": "ignored.gguf"})
    try:
        assert [m["id"] for m in httpx.get(base + "/v1/models").json()["data"]] == ["one", "two"]
        out = httpx.post(base + "/v1/completions", json={"model": "two", "prompt": "hi", "max_tokens": 2},
                         timeout=60).json()
        assert out["model"] == "two" and out["usage"]["completion_tokens"] == 2
    finally:
        _stop(server)
