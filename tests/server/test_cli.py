"""`allama serve` / `python -m allama.server`: flags, environment, config files, and a
SIGTERM that lets running requests finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from allama.server import ConfigFileSettings, Settings
from allama.server.cli import settings_from_args

from .live_server import free_port


def test_flags_in_both_spellings_and_shortcuts(monkeypatch):
    monkeypatch.setenv("N_CTX", "1024")
    settings = settings_from_args(["--model", "m.gguf", "--alias", "m", "--n-parallel", "3", "--n_batch", "128",
                                   "--flash_attn", "--use-mmap", "false", "--api-key", "k", "--port", "9000",
                                   "--chat_template_kwargs", '{"enable_thinking": false}',
                                   "--kv_overrides", "a.b=int:3,c=bool:true"])
    assert isinstance(settings, Settings)
    assert (settings.model_alias, settings.n_parallel, settings.n_batch, settings.n_ctx) == ("m", 3, 128, 1024)
    assert settings.flash_attn is True and settings.use_mmap is False
    assert settings.api_key == "k" and settings.port == 9000
    assert settings.chat_template_kwargs == {"enable_thinking": False}
    assert settings.llama_kwargs()["kv_overrides"] == {"a.b": 3, "c": True}


def test_a_config_file_with_two_models_and_a_server_flag(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"port": 8001, "models": [{"model": "a.gguf", "model_alias": "a"},
                                                             {"model": "b.gguf", "n_ctx": 64}]}))
    settings = settings_from_args(["--config", str(path), "--port", "8002"])
    assert isinstance(settings, ConfigFileSettings)
    assert settings.port == 8002
    assert [m.alias for m in settings.models] == ["a", "b.gguf"]
    json_path = tmp_path / "models.json"
    json_path.write_text(json.dumps({"models": [{"model": "c.gguf"}]}))
    assert settings_from_args(["--config", str(json_path)]).models[0].model == "c.gguf"


def test_sigterm_lets_a_running_stream_finish(llama_f32_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "allama.server", "--model", str(llama_f32_path), "--n_ctx", "512",
         "--host", "127.0.0.1", "--port", str(port), "--shutdown_grace_seconds", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 300, "ignore_eos": True,
                "stream": True}
        with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=60) as response:
            lines = response.iter_lines()
            next(lines)
            server.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(httpx.TransportError):  # no new requests while draining
                httpx.get(base + "/health", timeout=2)
            rest = list(lines)
        assert "data: [DONE]" in rest  # the running stream finished
        # uvicorn re-raises the signal once it has shut down cleanly
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
        assert b"Finished server process" in server.stdout.read()
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def test_allama_serve_shows_a_loading_bar_and_the_library_does_not(llama_f32_path, capfd):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "allama", "serve", "--model", str(llama_f32_path), "--alias", "tiny",
         "--n_ctx", "256", "--n_threads", "1", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "SKBUILD_EDITABLE_SKIP": "1"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json().get("status") == "ok":
                    break
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err[-2000:]
    assert "loading tiny" in err and "100%" in err, err[-2000:]

    from allama.server import create_app

    from .live_server import serving

    with serving(create_app(Settings(model=str(llama_f32_path), n_ctx=256, n_threads=1))):
        pass
    assert "loading" not in capfd.readouterr().err


def test_rpc_workers_take_every_layer_unless_told_otherwise():
    settings = settings_from_args(["--model", "m.gguf", "--rpc", "10.0.0.2:50052,10.0.0.3:50052"])
    assert settings.rpc_servers == "10.0.0.2:50052,10.0.0.3:50052"
    assert settings.llama_kwargs()["n_gpu_layers"] == -1  # otherwise every layer would stay here
    kept = settings_from_args(["--model", "m.gguf", "--rpc_servers", "h:1", "--n_gpu_layers", "3"])
    assert kept.rpc_servers == "h:1" and kept.llama_kwargs()["n_gpu_layers"] == 3
    assert settings_from_args(["--model", "m.gguf"]).llama_kwargs()["n_gpu_layers"] == 0
