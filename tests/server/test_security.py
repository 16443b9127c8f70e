"""What the server guards (docs/security.md): names in requests never become paths, local
media files stay closed unless enabled, API keys are compared in constant time."""

from __future__ import annotations

import base64
import hmac

import httpx

from .model_aliases import CHAT


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_a_model_name_is_an_alias_never_a_path(base_url, llama_f32_path):
    for name in ["../../../etc/passwd", str(llama_f32_path.parent / "other.gguf"), "/etc/passwd",
                 "tiny-chat/../tiny-embed", "./" + llama_f32_path.name]:
        body = {"model": name, "prompt": "x", "max_tokens": 1}
        error = error_of(httpx.post(base_url + "/v1/completions", json=body, timeout=30), 404)
        assert "does not exist" in error["message"]
    # a configured model's own path names it (as in llama-cpp-python's server): a lookup, not a file open
    body = {"model": str(llama_f32_path), "prompt": "x", "max_tokens": 1}
    assert httpx.post(base_url + "/v1/completions", json=body, timeout=30).json()["model"] == CHAT


def test_a_lora_name_is_looked_up_never_opened(base_url):
    for name in ["../../adapter.gguf", "/tmp/adapter.gguf"]:
        body = {"model": CHAT, "prompt": "x", "max_tokens": 1, "lora": {name: 1.0}}
        error = error_of(httpx.post(base_url + "/v1/completions", json=body, timeout=30), 400)
        assert name in error["message"]


def test_local_files_in_chat_media_are_refused_unless_enabled(base_url):
    for url in ["file:///etc/passwd", "/etc/passwd", "file://../../etc/hostname"]:
        body = {"model": CHAT, "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]}]}
        response = httpx.post(base_url + "/v1/chat/completions", json=body, timeout=30)
        assert 400 <= response.status_code < 500, response.text
        assert "passwd" not in response.text or "not allowed" in response.text or "refused" in response.text


def test_api_keys_are_compared_in_constant_time(guarded, monkeypatch):
    url, _ = guarded
    calls = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    body = {"prompt": "x", "max_tokens": 1}
    error_of(httpx.post(url + "/v1/completions", json=body, headers={"Authorization": "Bearer s3cre"}), 401)
    assert calls and calls[-1] == (b"s3cre", b"s3cret")


def test_oversized_media_hits_the_body_limit(guarded):
    url, _ = guarded
    image = base64.b64encode(b"\x89PNG" + b"\0" * 4096).decode()
    body = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}]}]}
    error_of(httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer s3cret"}), 413)
