"""OpenAI's `prompt_cache_key`, in the body or as the X-Prompt-Cache-Key header that balancers
route on: accepted by completions and chat completions, checked (a string of bounded length),
and listed in the OpenAPI schema."""

from __future__ import annotations

import httpx
import pytest

from allama.server.schemas import PROMPT_CACHE_KEY_MAX_LENGTH

from .model_aliases import CHAT

BODIES = {
    "/v1/completions": {"model": CHAT, "prompt": "Hello", "max_tokens": 2},
    "/v1/chat/completions": {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
}
HEADER = "X-Prompt-Cache-Key"


def _invalid(response: httpx.Response) -> dict:
    assert response.status_code == 400, response.text
    return response.json()["error"]


@pytest.mark.parametrize("path", BODIES)
def test_the_key_is_accepted_in_the_body_the_header_or_both(base_url, path):
    key = "conversation-42"
    for body, headers in (({**BODIES[path], "prompt_cache_key": key}, {}),
                          (BODIES[path], {HEADER: key}),
                          ({**BODIES[path], "prompt_cache_key": key}, {HEADER: "another"})):
        response = httpx.post(base_url + path, json=body, headers=headers, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize("path", BODIES)
def test_the_key_streams_too(base_url, path):
    body = {**BODIES[path], "prompt_cache_key": "k", "stream": True}
    with httpx.stream("POST", base_url + path, json=body, headers={HEADER: "k"}, timeout=60) as response:
        assert response.status_code == 200
        assert "data: [DONE]" in response.read().decode()


@pytest.mark.parametrize("path", BODIES)
@pytest.mark.parametrize("value", [42, ["a"], {"a": 1}, "x" * (PROMPT_CACHE_KEY_MAX_LENGTH + 1)])
def test_a_key_that_is_not_a_bounded_string_is_400_naming_it(base_url, path, value):
    error = _invalid(httpx.post(base_url + path, json={**BODIES[path], "prompt_cache_key": value}))
    assert error["param"] == "prompt_cache_key" and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", BODIES)
def test_an_overlong_header_is_400_naming_it(base_url, path):
    error = _invalid(httpx.post(base_url + path, json=BODIES[path],
                                headers={HEADER: "x" * (PROMPT_CACHE_KEY_MAX_LENGTH + 1)}))
    assert HEADER in error["param"]


def test_the_openapi_schema_lists_the_field_and_the_header(base_url):
    schema = httpx.get(base_url + "/openapi.json").json()
    for path in BODIES:
        operation = schema["paths"][path]["post"]
        assert any(p["in"] == "header" and p["name"] == HEADER for p in operation["parameters"])
    for model in ("CompletionRequest", "ChatCompletionRequest"):
        assert "prompt_cache_key" in schema["components"]["schemas"][model]["properties"]
