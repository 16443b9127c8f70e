"""Raw HTTP: OpenAI-shaped errors with the right status, never a 500 for bad input."""

from __future__ import annotations

import httpx
import pytest

from allama.server import ModelSettings, ServerSettings, create_app

from .live_server import serving
from .model_aliases import CHAT, EMBED

CHAT_BODY = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize("content", [b"{bad json", b"", b"[1, 2]", b'"text"', b"\xff\xfe", b"null"])
def test_malformed_bodies_are_400(base_url, content):
    response = httpx.post(base_url + "/v1/chat/completions", content=content,
                          headers={"content-type": "application/json"})
    _error(response, 400)


def test_wrong_types_are_400_naming_the_field(base_url):
    error = _error(httpx.post(base_url + "/v1/chat/completions", json={**CHAT_BODY, "max_tokens": "many"}), 400)
    assert error["param"] == "max_tokens"


def test_unknown_fields_are_ignored(base_url):
    body = {**CHAT_BODY, "user": "u1", "store": False, "metadata": {"a": "b"}, "service_tier": "auto"}
    assert httpx.post(base_url + "/v1/chat/completions", json=body).status_code == 200


def test_every_sampling_extra_is_accepted(base_url):
    body = {**CHAT_BODY, "top_k": 5, "min_p": 0.1, "repeat_penalty": 1.1, "repeat_last_n": 16, "mirostat_mode": 2,
            "mirostat_tau": 4.0, "mirostat_eta": 0.2, "xtc_probability": 0.5, "xtc_threshold": 0.2,
            "dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": 32,
            "seed": 1, "ignore_eos": True, "logit_bias": {"5": -1.0}, "top_n_sigma": 1.0}
    out = httpx.post(base_url + "/v1/chat/completions", json=body).json()
    assert out["usage"]["completion_tokens"] == 2
    grammar = {**CHAT_BODY, "max_tokens": 20, "grammar": 'root ::= "yes" | "no"'}
    assert httpx.post(base_url + "/v1/chat/completions", json=grammar).json()["choices"][0]["message"][
        "content"] in ("yes", "no")
    schema = {**CHAT_BODY, "max_tokens": 20, "json_schema": {"enum": ["a", "b"]}}
    assert httpx.post(base_url + "/v1/chat/completions", json=schema).json()["choices"][0]["message"][
        "content"] in ('"a"', '"b"')


def test_completions_accept_the_extras_too(base_url):
    body = {"model": CHAT, "prompt": "Hi", "max_tokens": 3, "ignore_eos": True, "top_k": 3, "grammar": 'root ::= "ok"'}
    assert httpx.post(base_url + "/v1/completions", json=body).json()["choices"][0]["text"] == "ok"


def test_bad_logit_bias_key_is_400(base_url):
    _error(httpx.post(base_url + "/v1/chat/completions", json={**CHAT_BODY, "logit_bias": {"x": 1}}), 400)


def test_rerank_on_a_model_that_is_not_a_reranker_is_400(base_url):
    body = {"model": EMBED, "query": "q", "documents": ["a", "b"]}
    assert "rerank" in _error(httpx.post(base_url + "/v1/rerank", json=body), 400)["message"]


def test_tokenize_count_and_detokenize(base_url):
    tokens = httpx.post(base_url + "/extras/tokenize", json={"model": CHAT, "input": "hello world"}).json()["tokens"]
    count = httpx.post(base_url + "/extras/tokenize/count", json={"model": CHAT, "input": "hello world"}).json()
    assert count == {"count": len(tokens)}
    text = httpx.post(base_url + "/extras/detokenize", json={"model": CHAT, "tokens": tokens}).json()["text"]
    assert text.strip() == "hello world"
    _error(httpx.post(base_url + "/extras/detokenize", json={"model": CHAT, "tokens": [10**9]}), 400)


def test_health_metrics_and_openapi(base_url):
    assert httpx.get(base_url + "/health").json() == {"status": "ok"}
    metrics = httpx.get(base_url + "/metrics").text
    for name in ("allama_sequences_active", "allama_sequences_queued", "allama_prompt_tokens_total",
                 "allama_generated_tokens_total", "allama_generated_tokens_per_second",
                 "allama_prefix_cache_hit_tokens_total", "allama_http_requests_total"):
        assert f"# TYPE {name} " in metrics
    assert f'allama_sequences_active{{model="{CHAT}"}}' in metrics
    paths = httpx.get(base_url + "/openapi.json").json()["paths"]
    assert {"/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/rerank",
            "/extras/tokenize", "/extras/tokenize/count", "/extras/detokenize", "/health", "/metrics"} <= set(paths)


def test_api_key_is_required(guarded):
    url, _ = guarded
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    error = _error(httpx.post(url + "/v1/chat/completions", json=body), 401)
    assert error["code"] == "invalid_api_key"
    _error(httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer wrong"}), 401)
    ok = httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert httpx.get(url + "/health").status_code == 200  # probes need no key


def test_a_prompt_over_the_servers_limit_is_400(guarded):
    url, _ = guarded
    body = {"messages": [{"role": "user", "content": "word " * 60}], "max_tokens": 1}
    error = _error(httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer s3cret"}), 400)
    assert "at most 40" in error["message"] and error["code"] == "context_length_exceeded"


def test_a_body_over_the_limit_is_413(guarded):
    url, _ = guarded
    body = {"messages": [{"role": "user", "content": "x" * 5000}]}
    _error(httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer s3cret"}), 413)


def test_a_full_queue_is_503_with_retry_after(guarded):
    url, _ = guarded
    auth = {"Authorization": "Bearer s3cret"}
    # long enough to still be running when the second request comes (the client reads slowly,
    # but the server writes on into the socket buffers)
    long = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=long, headers=auth, timeout=60) as first:
        lines = first.iter_lines()  # (kept: dropping the iterator closes the connection)
        next(lines)  # the one slot is now busy
        second = httpx.post(url + "/v1/chat/completions", json={**long, "stream": False, "max_tokens": 1},
                            headers=auth)
        error = _error(second, 503)
        assert second.headers["retry-after"] and error["code"] == "queue_full"
        assert httpx.get(url + "/health").json()["status"] == "overloaded"


def test_a_waiting_stream_gets_keep_alive_pings(llama_f32_path):
    app = create_app(server_settings=ServerSettings(ping_interval=0.05),
                     model_settings=[ModelSettings(model=str(llama_f32_path), n_ctx=4096, n_parallel=1)])
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000, "ignore_eos": True, "stream": True}
    with serving(app) as url:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as running:
            first = running.iter_lines()
            next(first)  # the one slot is busy: the next stream waits in the queue
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as waiting:
                lines = waiting.iter_lines()
                assert next(line for line in lines if line) == ": ping"


def test_a_request_over_the_timeout_is_504(llama_f32_path):
    app = create_app(server_settings=ServerSettings(request_timeout=0.3),
                     model_settings=[ModelSettings(model=str(llama_f32_path), n_ctx=4096, n_parallel=1)])
    with serving(app) as url:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000, "ignore_eos": True}
        error = _error(httpx.post(url + "/v1/chat/completions", json=body, timeout=30), 504)
        assert error["code"] == "timeout"
