"""The HTTP endpoints: OpenAI's (/v1/...), llama-cpp-python's extras (/extras/...), and
/health and /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from allama.chat.request import response_format_grammar
from allama.grammar import json_schema_to_gbnf
from allama.llama import Llama
from allama.llama_prompts import prompt_token_lists
from allama.server.errors import APIError, api_error_from
from allama.server.event_stream import event_stream_response
from allama.server.metrics import render_metrics
from allama.server.min_tokens import MinTokensLogitsProcessor
from allama.server.model_registry import ModelLease, ModelRegistry
from allama.server.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    PromptCacheKeyHeader,
    RerankRequest,
    Sampling,
    TokenizeRequest,
)
from allama.server.settings import ServerSettings
from allama.stream import AsyncStream

router = APIRouter()
T = TypeVar("T")

# Request fields that are not create_completion keyword arguments as they stand
# (prompt_cache_key is for the balancer in front: the prefix cache matches prompts by their tokens).
_NOT_SAMPLING = {"model", "stream_options", "json_schema", "grammar", "logit_bias", "logit_bias_type", "min_tokens",
                 "prompt_cache_key"}


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def _settings(request: Request) -> ServerSettings:
    return request.app.state.server_settings


async def _call(work: Awaitable[T]) -> T:
    """Awaits model work, turning its errors into API errors (400, 503, ...)."""
    try:
        return await work
    except APIError:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to the HTTP error for it
        raise api_error_from(exc) from exc


async def _with_model(request: Request, name: str | None, work: Callable[[Llama], Awaitable[Any]]) -> Any:
    """Runs `work` on the model a request names, holding it resident until the work is done
    (for a stream: until the stream ends or is dropped)."""
    lease = await _registry(request).lease(name)
    try:
        result = await _call(work(lease.model))
    except BaseException:
        lease.release()
        raise
    if isinstance(result, AsyncStream):
        return _leased(result, lease)
    lease.release()
    return result


def _leased(stream: AsyncStream[dict[str, Any]], lease: ModelLease) -> AsyncStream[dict[str, Any]]:
    async def chunks() -> AsyncIterator[dict[str, Any]]:
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()
            lease.release()

    def abandon() -> None:
        stream.abandon()
        lease.release()

    return AsyncStream(chunks(), on_abandon=abandon)


def _sampling_kwargs(body: Sampling, settings: ServerSettings, max_tokens: int | None,
                     exclude: set[str], llm: Llama) -> tuple[dict[str, Any], int | None]:
    """create_completion's keyword arguments from a request and the max_tokens to use,
    with the server's limits applied."""
    _check_limits(body, settings, max_tokens)
    limit = settings.max_tokens_limit
    kwargs = body.model_dump(exclude=_NOT_SAMPLING | exclude, exclude_unset=False)
    if body.stream_options is not None:
        kwargs["stream_options"] = body.stream_options.model_dump()
    if body.logit_bias:
        kwargs["logit_bias"] = _logit_bias(body, llm)
    if body.min_tokens > 0:
        kwargs["logits_processor"] = MinTokensLogitsProcessor(body.min_tokens, llm)
    if body.grammar is not None:
        kwargs["grammar"] = body.grammar
    elif body.json_schema is not None:
        try:
            kwargs["grammar"] = json_schema_to_gbnf(body.json_schema)
        except ValueError as exc:
            raise APIError(400, str(exc), param="json_schema") from exc
    if limit is not None and max_tokens is None:
        max_tokens = limit
    kwargs["max_prompt_tokens"] = settings.max_prompt_tokens
    kwargs["timeout"] = settings.request_timeout
    return kwargs, max_tokens


def _check_limits(body: Sampling, settings: ServerSettings, max_tokens: int | None) -> None:
    """The server's limits on n and max_tokens (checked before a model is swapped in for the request)."""
    if body.n > settings.max_n:
        raise APIError(400, f"n is {body.n}; this server allows at most {settings.max_n}", param="n")
    limit = settings.max_tokens_limit
    if limit is not None and max_tokens is not None and max_tokens > limit:
        raise APIError(400, f"max_tokens is {max_tokens}; this server allows at most {limit}", param="max_tokens")


def _logit_bias(body: Sampling, llm: Llama) -> dict[int, float]:
    """Token ids to bias: the keys themselves, or with logit_bias_type "tokens" (as
    llama-cpp-python) every token of each key's text, read with special tokens."""
    assert body.logit_bias is not None
    if body.logit_bias_type == "tokens":
        return {token: bias for text, bias in body.logit_bias.items()
                for token in llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)}
    try:
        return {int(k): v for k, v in body.logit_bias.items()}
    except ValueError:
        raise APIError(400, "logit_bias keys must be token ids (or give logit_bias_type \"tokens\")",
                       param="logit_bias") from None


def _respond(result: dict[str, Any] | AsyncStream[dict[str, Any]], settings: ServerSettings) -> Any:
    if isinstance(result, AsyncStream):
        return event_stream_response(result, None if settings.disable_ping_events else settings.ping_interval)
    return JSONResponse(result)


@router.post("/v1/completions")
@router.post("/v1/engines/copilot-codex/completions", include_in_schema=False)
async def create_completion(body: CompletionRequest, request: Request,
                            prompt_cache_key: PromptCacheKeyHeader = None) -> Any:
    """A legacy completion of a prompt, or of each prompt in a list. The copilot-codex path
    (as llama-cpp-python's) completes with the model aliased copilot-codex, else the default.
    The X-Prompt-Cache-Key header is only checked: it is there for the balancer in front."""
    settings = _settings(request)
    name = body.model
    if request.url.path.endswith("/v1/engines/copilot-codex/completions"):
        name = "copilot-codex" if "copilot-codex" in _registry(request).settings else _registry(request).default
    _check_limits(body, settings, body.max_tokens)

    async def complete(llm: Llama) -> Any:
        kwargs, max_tokens = _sampling_kwargs(body, settings, body.max_tokens,
                                              {"prompt", "max_tokens", "response_format"}, llm)
        kwargs["max_tokens"] = max_tokens
        if body.min_tokens > 0 and isinstance(body.prompt, list) and body.prompt \
                and not isinstance(body.prompt[0], int) and len(body.prompt) > 1:  # several prompts
            kwargs["logits_processor"] = MinTokensLogitsProcessor(
                body.min_tokens, llm, prompt_token_lists(llm, body.prompt, body.suffix))
        if body.response_format is not None and "grammar" not in kwargs:
            try:
                grammar = response_format_grammar(body.response_format)
            except ValueError as exc:
                raise APIError(400, str(exc), param="response_format") from exc
            if grammar is not None:
                kwargs["grammar"] = grammar
        return await llm.create_completion(body.prompt, model=_alias(request, name), **kwargs)

    return _respond(await _with_model(request, name, complete), settings)


@router.post("/v1/chat/completions")
async def create_chat_completion(body: ChatCompletionRequest, request: Request,
                                 prompt_cache_key: PromptCacheKeyHeader = None) -> Any:
    """A chat completion: tools, response_format, reasoning and streaming as OpenAI's. The
    X-Prompt-Cache-Key header is only checked: it is there for the balancer in front."""
    settings = _settings(request)
    chat_fields = {"messages", "max_tokens", "max_completion_tokens", "logprobs", "top_logprobs", "response_format",
                   "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call",
                   "chat_template_kwargs", "reasoning_effort", "temperature", "top_p", "top_k", "min_p",
                   "typical_p", "stream", "stop", "seed"}
    optional = {k: v for k, v in (("tools", body.tools), ("tool_choice", body.tool_choice),
                                  ("functions", body.functions), ("function_call", body.function_call),
                                  ("parallel_tool_calls", body.parallel_tool_calls),
                                  ("chat_template_kwargs", body.chat_template_kwargs),
                                  ("reasoning_effort", body.reasoning_effort)) if v is not None}
    template_kwargs = _registry(request).settings[_alias(request, body.model)].chat_template_kwargs
    if template_kwargs and "chat_template_kwargs" not in optional:
        optional["chat_template_kwargs"] = template_kwargs
    _check_limits(body, settings, body.max_completion_tokens if body.max_completion_tokens is not None
                  else body.max_tokens)

    async def chat(llm: Llama) -> Any:
        limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        kwargs, limit = _sampling_kwargs(body, settings, limit, chat_fields, llm)
        return await llm.create_chat_completion(
            [m.model_dump() for m in body.messages], temperature=body.temperature, top_p=body.top_p,
            top_k=body.top_k, min_p=body.min_p, typical_p=body.typical_p, stream=body.stream, stop=body.stop,
            seed=body.seed, max_tokens=limit, logprobs=body.logprobs, top_logprobs=body.top_logprobs,
            response_format=body.response_format, model=_alias(request, body.model), **optional, **kwargs)

    return _respond(await _with_model(request, body.model, chat), settings)


@router.post("/v1/embeddings")
async def create_embedding(body: EmbeddingRequest, request: Request) -> Any:
    """Embeddings in OpenAI's shape, as unit vectors (as OpenAI and llama-server return them)."""
    return await _with_model(request, body.model, lambda llm: llm.create_embedding(
        body.input, model=_alias(request, body.model), encoding_format=body.encoding_format,
        dimensions=body.dimensions, normalize=True))


@router.post("/v1/rerank")
@router.post("/rerank")
async def rerank(body: RerankRequest, request: Request) -> Any:
    """Documents scored against a query by a reranker model (llama-server's and Jina's shape)."""
    return await _with_model(request, body.model, lambda llm: llm.rerank(
        body.query, body.documents, top_n=body.top_n, model=_alias(request, body.model)))


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    registry = _registry(request)
    created = request.app.state.started
    return {"object": "list", "data": [{"id": alias, "object": "model", "created": created, "owned_by": "allama",
                                        "permissions": []} for alias in registry.settings]}


@router.post("/extras/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
    """The prompt's token ids; as llama-cpp-python's: with BOS where the model wants one,
    special-token text read as special tokens."""
    return {"tokens": await _with_model(request, body.model, lambda llm: _tokens(llm, body))}


@router.post("/extras/tokenize/count")
async def count_tokens(body: TokenizeRequest, request: Request) -> dict[str, Any]:
    return {"count": len(await _with_model(request, body.model, lambda llm: _tokens(llm, body)))}


async def _tokens(llm: Llama, body: TokenizeRequest) -> list[int]:
    return llm.tokenize(body.input.encode("utf-8"), add_bos=body.add_special, special=body.special)


@router.post("/extras/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, Any]:
    """The text of token ids, special tokens left out (as llama-cpp-python's)."""
    async def text(llm: Llama) -> bytes:
        try:
            return llm.detokenize(body.tokens)
        except ValueError as exc:  # a token id out of range
            raise APIError(400, str(exc), param="tokens") from exc

    return {"text": (await _with_model(request, body.model, text)).decode("utf-8", errors="replace")}


@router.get("/health")
async def health(request: Request) -> Response:
    """ok (200); loading, overloaded (a queue is full) or error (503)."""
    registry = _registry(request)
    registry.start_loading()
    if registry.errors:
        return JSONResponse({"status": "error", "errors": {a: str(e) for a, e in registry.errors.items()}}, 503)
    if not registry.loaded:
        return JSONResponse({"status": "loading"}, 503, headers={"Retry-After": "1"})
    lost = {alias: llm.model.lost_worker for alias, llm in registry.models.items() if llm.model.lost_worker}
    if lost:  # an RPC worker holding some of a model's layers went away
        return JSONResponse({"status": "error", "errors": lost}, 503)
    if any(_queue_full(alias, llm, registry) for alias, llm in registry.models.items()):
        return JSONResponse({"status": "overloaded"}, 503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "ok"})


@router.get("/metrics")
async def metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(render_metrics(_registry(request), request.app.state.http),
                             media_type="text/plain; version=0.0.4")


def _queue_full(alias: str, llm: Llama, registry: ModelRegistry) -> bool:
    """Every slot busy and the queue at its limit: a new request would get 503."""
    stats, settings = llm.stats(), registry.settings[alias]
    return stats.active >= settings.n_parallel and stats.queued >= settings.max_queue


def _alias(request: Request, name: str | None) -> str:
    return _registry(request).resolve(name)

