"""Bad HTTP requests: malformed bodies, wrong content types, missing fields, wrong types and
values out of range on every endpoint. Each gets a 4xx with an OpenAI error body, the app
keeps serving, and no request is a 500, a crash or a hang."""

from __future__ import annotations

import json
from typing import Any

import pytest

from . import scenarios
from .runner import expect_returns, run_case

CHAT = "tiny-chat"
HI = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
JSON = {"content-type": "application/json"}


def post(name: str, path: str, body: Any, status: int, fragment: str = "", **request: Any) -> Any:
    """A POST of `body` (a dict: JSON; bytes: raw content) expecting `status` and an error
    message holding `fragment` (status 200: accepted)."""
    if isinstance(body, bytes):
        request = {"content": body, "headers": request.pop("headers", JSON), **request}
    else:
        request = {"json": body, **request}
    return pytest.param("POST", path, request, status, fragment, id=name)


def chat(name: str, status: int, fragment: str = "", **fields: Any) -> Any:
    return post(name, "/v1/chat/completions", {"messages": HI, "max_tokens": 2, **fields}, status, fragment)


def completion(name: str, status: int, fragment: str = "", **fields: Any) -> Any:
    return post(name, "/v1/completions", {"prompt": "Hello", "max_tokens": 2, **fields}, status, fragment)


def raw_chat(name: str, fields: str | bytes, status: int, fragment: str = "") -> Any:
    """A chat body with `fields` spliced in as raw JSON text (NaN, deep nesting, bad bytes)."""
    raw = fields if isinstance(fields, bytes) else fields.encode()
    body = b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, ' + raw + b"}"
    return post(name, "/v1/chat/completions", body, status, fragment)


def deep_schema(depth: int) -> str:
    return '"json_schema": ' + '{"type": "array", "items": ' * depth + '{"type": "string"}' + "}" * depth


BODIES = [
    post("body-not-json", "/v1/chat/completions", b"{bad json", 400, "not valid JSON"),
    post("body-empty", "/v1/chat/completions", b"", 400),
    post("body-a-list", "/v1/chat/completions", b"[1, 2]", 400),
    post("body-a-string", "/v1/chat/completions", b'"text"', 400),
    post("body-null", "/v1/chat/completions", b"null", 400),
    post("body-a-number", "/v1/chat/completions", b"123", 400),
    post("body-not-utf8", "/v1/chat/completions", b"\xff\xfe\x00{", 400),
    post("body-deeply-nested-json", "/v1/chat/completions", b"[" * 100000 + b"]" * 100000, 400),
    post("body-truncated", "/v1/chat/completions", json.dumps({"messages": HI}).encode()[:-3], 400),
    raw_chat("field-deeply-nested", '"metadata": ' + "[" * 50000 + "]" * 50000, 400),
    raw_chat("string-with-invalid-utf8", b'"user": "\xff"', 400),
    raw_chat("temperature-nan", '"temperature": NaN', 400, "temperature"),
    raw_chat("temperature-infinity", '"temperature": Infinity', 400, "temperature"),
    raw_chat("top_p-nan", '"top_p": NaN', 400, "top_p"),
    raw_chat("logit_bias-nan", '"logit_bias": {"5": NaN}', 400, "NaN"),
    raw_chat("content-lone-surrogate-escape", '"stop": ["ok"], "messages": [{"role": "user", "content": "\\ud800"}]',
             400, "surrogate"),
    raw_chat("json_schema-1000-deep", deep_schema(1000), 400),  # past the JSON parser's nesting limit
    raw_chat("json_schema-300-deep-converts", deep_schema(300), 200),
    raw_chat("json_schema-600-deep", deep_schema(600), 400, "deep"),
    post("content-type-text-plain", "/v1/chat/completions", json.dumps({"messages": HI}).encode(), 400,
         headers={"content-type": "text/plain"}),
    post("content-type-form", "/v1/chat/completions", b"messages=hi", 400,
         headers={"content-type": "application/x-www-form-urlencoded"}),
    post("content-type-multipart", "/v1/chat/completions", b"--x\r\n\r\nhi\r\n--x--\r\n", 400,
         headers={"content-type": "multipart/form-data; boundary=x"}),
    post("content-type-json-latin1", "/v1/chat/completions",
         b'{"messages": [{"role": "user", "content": "caf\xe9"}], "max_tokens": 2}', 400,
         headers={"content-type": "application/json; charset=latin-1"}),
]

MISSING = [
    post("chat-without-messages", "/v1/chat/completions", {"max_tokens": 2}, 400, "messages"),
    post("embeddings-without-input", "/v1/embeddings", {"model": CHAT}, 400, "input"),
    post("rerank-without-query", "/v1/rerank", {"documents": ["a"]}, 400, "query"),
    post("rerank-without-documents", "/v1/rerank", {"query": "q"}, 400, "documents"),
    post("tokenize-without-input", "/extras/tokenize", {}, 400, "input"),
    post("detokenize-without-tokens", "/extras/detokenize", {}, 400, "tokens"),
    post("completion-without-prompt-is-bos", "/v1/completions", {"max_tokens": 2}, 200),
]

CHAT_FIELDS = [
    chat("messages-str", 400, "messages", messages="hello"),
    chat("messages-dict", 400, "messages", messages={"role": "user", "content": "hi"}),
    chat("messages-empty", 400, "messages", messages=[]),
    chat("message-int", 400, "messages", messages=[1]),
    chat("role-int", 400, "role", messages=[{"role": 5, "content": "hi"}]),
    chat("role-unknown", 400, "wizard", messages=[{"role": "wizard", "content": "hi"}]),
    chat("content-int", 400, "content", messages=[{"role": "user", "content": 5}]),
    chat("content-part-unknown", 400, "content part", messages=[{"role": "user", "content": [{"type": "video"}]}]),
    chat("stop-int", 400, "stop", stop=5),
    chat("stop-list-of-ints", 400, "stop", stop=[1]),
    chat("stop-empty-string", 400, "stop", stop=""),
    chat("seed-str", 400, "seed", seed="x"),
    chat("max_tokens-str", 400, "max_tokens", max_tokens="many"),
    chat("max_tokens-negative", 400, "max_tokens", max_tokens=-1),
    chat("max_completion_tokens-negative", 400, "max_completion_tokens", max_completion_tokens=-5),
    chat("n-0", 400, "n", n=0),
    chat("n-over-the-servers-limit", 400, "at most", n=10**6),
    chat("n-over-n_parallel", 400, "n_parallel", n=3),
    chat("temperature-str", 400, "temperature", temperature="hot"),
    chat("temperature-negative", 400, "temperature", temperature=-1),
    chat("top_p-above-1", 400, "top_p", top_p=1.5),
    chat("top_p-negative", 400, "top_p", top_p=-1),
    chat("top_k-negative", 400, "top_k", top_k=-5),
    chat("top_k-float", 400, "top_k", top_k=1.5),
    chat("min_p-above-1", 400, "min_p", min_p=2),
    chat("typical_p-negative", 400, "typical_p", typical_p=-0.5),
    chat("repeat_penalty-negative", 400, "repeat_penalty", repeat_penalty=-1),
    chat("repeat_penalty-0", 400, "repeat_penalty", repeat_penalty=0),
    chat("presence_penalty-3", 400, "presence_penalty", presence_penalty=3),
    chat("mirostat_mode-3", 400, "mirostat_mode", mirostat_mode=3),
    chat("mirostat_tau-negative", 400, "mirostat_tau", mirostat_tau=-1),
    chat("repeat_last_n-minus-2", 400, "repeat_last_n", repeat_last_n=-2),
    chat("dry_penalty_last_n-minus-2", 400, "dry_penalty_last_n", dry_penalty_last_n=-2),
    chat("logit_bias-key-not-a-token", 400, "logit_bias", logit_bias={"x": 1}),
    chat("logit_bias-token-out-of-range", 400, "out of range", logit_bias={"99999999": 1}),
    chat("logit_bias-token-over-int32", 400, "out of range", logit_bias={str(2**40): 1}),
    chat("logit_bias-value-str", 400, "logit_bias", logit_bias={"5": "x"}),
    chat("logit_bias-list", 400, "logit_bias", logit_bias=[[5, 1]]),
    chat("top_logprobs-50", 400, "top_logprobs", logprobs=True, top_logprobs=50),
    chat("grammar-syntax-error", 400, "grammar", grammar='root ::= "open'),
    chat("grammar-nested-20000-deep", 400, "nest", grammar="root ::= " + "(" * 20000 + '"a"' + ")" * 20000),
    chat("grammar-repetition-max-below-min", 400, "maximum below", grammar='root ::= "a"{5,2}'),
    chat("grammar-left-recursion", 400, "recursion", grammar="root ::= root"),
    chat("json_schema-type-unknown", 400, "decimal", json_schema={"type": "decimal"}),
    chat("json_schema-length-max-below-min", 400, "maxLength", json_schema={"type": "string", "minLength": 5,
                                                                             "maxLength": 2}),
    chat("json_schema-ref-missing", 400, "resolve", json_schema={"$ref": "#/$defs/x"}),
    chat("response_format-type-unknown", 400, "yaml", response_format={"type": "yaml"}),
    chat("response_format-str", 400, "response_format", response_format="json"),
    chat("response_format-json_schema-str", 400, "json_schema", response_format={"type": "json_schema",
                                                                                   "json_schema": "x"}),
    chat("tools-str", 400, "tools", tools="x"),
    chat("tool-without-function", 400, "function", tools=[{"type": "function"}]),
    chat("tool_choice-without-function", 400, "tool_choice", tools=[TOOL], tool_choice={"type": "function"}),
    chat("tool_choice-unknown-tool", 400, "nope", tools=[TOOL],
         tool_choice={"type": "function", "function": {"name": "nope"}}),
    chat("tool_choice-unknown-string", 400, "tool_choice", tools=[TOOL], tool_choice="sometimes"),
    chat("stream-with-a-bad-value-is-400-not-sse", 400, "top_p", stream=True, top_p=9),
    chat("stream_options-str", 400, "stream_options", stream=True, stream_options="x"),
    chat("lora-unknown", 400, "nope", lora={"nope": 1.0}),
    chat("priority-str", 400, "priority", priority="high"),
    chat("prompt-over-n_ctx", 400, "context", messages=[{"role": "user", "content": "word " * 300}]),
    chat("max_tokens-huge-stops-at-n_ctx", 200, max_tokens=10**30),
    chat("seed-beyond-64-bits", 200, seed=2**70),
]

COMPLETION_FIELDS = [
    completion("prompt-int", 400, "prompt", prompt=5),
    completion("prompt-dict", 400, "prompt", prompt={"text": "hi"}),
    completion("prompt-token-floats", 400, "prompt", prompt=[[1.5]]),
    completion("prompt-mixed", 400, "prompt", prompt=[1, "a"]),
    completion("prompt-token-out-of-range", 400, "out of range", prompt=[[1, 10**9]]),
    completion("prompt-token-negative", 400, "out of range", prompt=[1, -1]),
    completion("prompt-over-n_ctx", 400, "context", prompt="word " * 300),
    completion("logprobs-100", 400, "logprobs", logprobs=100),
    completion("suffix-without-fim", 400, "FIM", suffix="end"),
    completion("echo-str", 400, "echo", echo="maybe"),
    completion("response_format-type-unknown", 400, "yaml", response_format={"type": "yaml"}),
]

OTHER_ENDPOINTS = [
    post("embeddings-empty-string", "/v1/embeddings", {"input": ""}, 400, "empty"),
    post("embeddings-empty-list", "/v1/embeddings", {"input": []}, 400, "empty"),
    post("embeddings-empty-token-list", "/v1/embeddings", {"input": [[]]}, 400, "empty"),
    post("embeddings-int", "/v1/embeddings", {"input": 5}, 400, "input"),
    post("embeddings-token-negative", "/v1/embeddings", {"input": [[-1]]}, 400, "out of range"),
    post("embeddings-dimensions-0", "/v1/embeddings", {"input": "a", "dimensions": 0}, 400, "dimensions"),
    post("embeddings-dimensions-too-many", "/v1/embeddings", {"input": "a", "dimensions": 10**6}, 400, "dimensions"),
    post("embeddings-encoding-format-unknown", "/v1/embeddings", {"input": "a", "encoding_format": "hex"}, 400,
         "encoding_format"),
    post("rerank-documents-empty", "/v1/rerank", {"query": "q", "documents": []}, 400, "documents"),
    post("tokenize-input-int", "/extras/tokenize", {"input": 5}, 400, "input"),
    post("tokenize-count-input-list", "/extras/tokenize/count", {"input": ["a"]}, 400, "input"),
    post("detokenize-out-of-range", "/extras/detokenize", {"tokens": [10**9]}, 400, "out of range"),
    post("detokenize-negative", "/extras/detokenize", {"tokens": [-1]}, 400, "out of range"),
    post("detokenize-strs", "/extras/detokenize", {"tokens": ["a"]}, 400, "tokens"),
    post("unknown-path", "/v1/nothing-here", {}, 404),
    pytest.param("GET", "/v1/chat/completions", {}, 405, "", id="get-on-a-post-route"),
    pytest.param("PUT", "/v1/completions", {"json": {}}, 405, "", id="put-on-a-post-route"),
    pytest.param("DELETE", "/v1/models", {}, 405, "", id="delete-on-a-get-route"),
]


@pytest.mark.parametrize("method, path, request_, status, fragment",
                         BODIES + MISSING + CHAT_FIELDS + COMPLETION_FIELDS + OTHER_ENDPOINTS)
def test_a_bad_request_is_a_4xx_with_an_openai_error(chat_model, embed_model, method, path, request_, status,
                                                     fragment):
    model = embed_model if path.startswith(("/v1/embeddings", "/v1/rerank")) else chat_model
    out = run_case(scenarios.http, [{"model": model, "model_alias": CHAT}], {"max_n": 16}, method, path, request_)
    response = expect_returns(out)
    assert response["status"] == status, response
    if status == 200:
        return
    error = (response["body"] or {}).get("error")
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, response
    assert fragment.lower() in (error["message"] + " " + str(error["param"])).lower(), error


@pytest.mark.parametrize("models, server, request_, status, code", [
    pytest.param("two", {}, {"json": {"model": "gpt-4o", "messages": HI}}, 404, "model_not_found", id="unknown-model"),
    pytest.param("one", {"max_request_bytes": 2048}, {"json": {"messages": [{"role": "user", "content": "x" * 5000}]}},
                 413, "request_too_large", id="body-over-the-limit"),
    pytest.param("one", {"max_request_bytes": 2048},
                 {"content": b"{}", "headers": {**JSON, "content-length": "99999999"}},
                 413, "request_too_large", id="declared-length-over-the-limit"),
    pytest.param("one", {"max_tokens_limit": 8}, {"json": {"messages": HI, "max_tokens": 9}}, 400, None,
                 id="max_tokens-over-the-servers-limit"),
    pytest.param("one", {"max_prompt_tokens": 4}, {"json": {"messages": [{"role": "user", "content": "word " * 20}]}},
                 400, "context_length_exceeded", id="prompt-over-the-servers-limit"),
    pytest.param("one", {"api_key": "k"}, {"json": {"messages": HI}}, 401, "invalid_api_key", id="no-api-key"),
    pytest.param("one", {"api_key": "k"}, {"json": {"messages": HI}, "headers": {"authorization": "Bearer \x7f"}},
                 401, "invalid_api_key", id="api-key-garbage"),
])
def test_a_request_over_a_server_setting_is_refused(chat_model, embed_model, models, server, request_, status, code):
    configs = [{"model": chat_model, "model_alias": CHAT}]
    if models == "two":
        configs.append({"model": embed_model, "model_alias": "tiny-embed"})
    out = run_case(scenarios.http, configs, server, "POST", "/v1/chat/completions", request_)
    response = expect_returns(out)
    assert response["status"] == status, response
    assert response["body"]["error"]["code"] == code, response
