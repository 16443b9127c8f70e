"""llama-cpp-python's request extras: min_tokens, logit_bias_type, the copilot-codex
completions path, and the /extras/tokenize defaults (BOS added, special tokens read)."""

from __future__ import annotations

import httpx
import pytest

from .model_aliases import CHAT


def _complete(base_url: str, path: str = "/v1/completions", **body) -> dict:
    response = httpx.post(base_url + path, json={"model": CHAT, "prompt": "Once upon", "temperature": 0.0, **body},
                          timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_min_tokens_keeps_the_model_from_ending_sooner(base_url, chat_model):
    eos = chat_model.token_eos()
    ends_at_once = {"logit_bias": {str(eos): 100.0}, "max_tokens": 20}
    assert _complete(base_url, **ends_at_once)["usage"]["completion_tokens"] == 0
    out = _complete(base_url, **ends_at_once, min_tokens=5)
    assert out["usage"]["completion_tokens"] == 5 and out["choices"][0]["finish_reason"] == "stop"
    several = _complete(base_url, **ends_at_once, min_tokens=3, n=2, prompt=["Once upon", "A longer prompt than that"])
    assert several["usage"]["completion_tokens"] == 4 * 3
    chat = httpx.post(base_url + "/v1/chat/completions", timeout=60, json={
        "model": CHAT, "messages": [{"role": "user", "content": "hi"}], "min_tokens": 4, **ends_at_once}).json()
    assert chat["usage"]["completion_tokens"] == 4
    assert httpx.post(base_url + "/v1/completions", json={"prompt": "x", "min_tokens": -1}).status_code == 400


def test_logit_bias_type_tokens_biases_the_tokens_of_each_text(base_url, chat_model):
    text = "hello"
    ids = chat_model.tokenize(text.encode(), add_bos=False, special=True)  # as llama-cpp-python reads the keys
    by_text = _complete(base_url, logit_bias={text: 30.0}, logit_bias_type="tokens", max_tokens=6)
    by_id = _complete(base_url, logit_bias={str(i): 30.0 for i in ids}, logit_bias_type="input_ids", max_tokens=6)
    unbiased = _complete(base_url, max_tokens=6)
    assert by_text["choices"][0]["text"] == by_id["choices"][0]["text"] != unbiased["choices"][0]["text"]
    response = httpx.post(base_url + "/v1/completions", json={"prompt": "x", "logit_bias": {text: 1.0}})
    assert response.status_code == 400 and "logit_bias_type" in response.json()["error"]["message"]


def test_the_copilot_codex_path_is_a_completions_alias(base_url):
    out = _complete(base_url, "/v1/engines/copilot-codex/completions", max_tokens=4)
    assert out["object"] == "text_completion" and out["usage"]["completion_tokens"] == 4
    assert out["model"] == CHAT  # the default model: no model is aliased copilot-codex


def test_tokenize_defaults_are_llama_cpp_pythons(base_url, chat_model):
    bos = chat_model.detokenize([chat_model.token_bos()], special=True).decode()
    text = f"{bos}hello"
    tokens = httpx.post(base_url + "/extras/tokenize", json={"model": CHAT, "input": text}).json()["tokens"]
    assert tokens == chat_model.tokenize(text.encode(), add_bos=True, special=True)
    assert tokens != chat_model.tokenize(text.encode(), add_bos=True, special=False)
    count = httpx.post(base_url + "/extras/tokenize/count", json={"model": CHAT, "input": text}).json()["count"]
    assert count == len(tokens)
    plain = httpx.post(base_url + "/extras/tokenize", json={"model": CHAT, "input": text, "add_special": False,
                                                            "special": False}).json()["tokens"]
    assert plain == chat_model.tokenize(text.encode(), add_bos=False, special=False)
    detok = httpx.post(base_url + "/extras/detokenize", json={"model": CHAT, "tokens": tokens}).json()["text"]
    assert detok == chat_model.detokenize(tokens).decode()  # special tokens left out, as llama-cpp-python's
