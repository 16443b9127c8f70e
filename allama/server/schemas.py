"""Request bodies: OpenAI's fields, plus llama-cpp-python's and llama-server's sampling
extras, and the headers the routes read. Unknown fields are ignored (OpenAI clients send
`user`, `store`, `metadata`, ...); a field of the wrong type or out of range is a 400."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Header
from pydantic import BaseModel, ConfigDict, Field

PROMPT_CACHE_KEY_MAX_LENGTH = 512
_PROMPT_CACHE_KEY_HELP = (
    "The conversation or shared prefix the request belongs to (OpenAI's field). The server only checks it; "
    "a balancer in front of several replicas hashes on it, so that requests with the same key reach the "
    "replica whose prefix cache holds their prompt (docs/deploying.md).")

# The header mirror of `prompt_cache_key`: balancers route on headers, not on JSON bodies.
PromptCacheKeyHeader = Annotated[str | None, Header(
    alias="X-Prompt-Cache-Key", max_length=PROMPT_CACHE_KEY_MAX_LENGTH,
    description=_PROMPT_CACHE_KEY_HELP + " The header form, which balancers can route on; the body's field "
                                         "names the key when both are sent.")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: str | None = Field(default=None, description="A served model's alias.")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class Sampling(_Body):
    """Sampling options shared by completions and chat completions."""

    temperature: float = Field(default=0.8, ge=0.0, le=10.0)
    top_p: float = Field(default=0.95, ge=0.0, le=1.0)
    top_k: int = Field(default=40, ge=0)
    min_p: float = Field(default=0.05, ge=0.0, le=1.0)
    typical_p: float = Field(default=1.0, ge=0.0, le=1.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    repeat_penalty: float = Field(default=1.0, ge=0.0)
    repeat_last_n: int | None = Field(default=None, ge=-1)
    logit_bias: dict[str, float] | None = None
    logit_bias_type: Literal["input_ids", "tokens"] | None = Field(
        default=None, description="input_ids (the default): logit_bias keys are token ids; tokens: texts, "
                                  "each of whose tokens gets the bias.")
    min_tokens: int = Field(default=0, ge=0, description="Tokens to generate before the model may end its "
                                                          "reply (a stop string or max_tokens may still end it).")
    mirostat_mode: int = Field(default=0, ge=0, le=2)
    mirostat_tau: float = Field(default=5.0, ge=0.0)
    mirostat_eta: float = Field(default=0.1, ge=0.0)
    tfs_z: float = Field(default=1.0, ge=0.0)
    xtc_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    xtc_threshold: float = Field(default=0.1, ge=0.0, le=1.0)
    dry_multiplier: float = Field(default=0.0, ge=0.0)
    dry_base: float = Field(default=1.75, ge=0.0)
    dry_allowed_length: int = Field(default=2, ge=0)
    dry_penalty_last_n: int = Field(default=0, ge=-1)
    dry_sequence_breakers: list[str] | None = None
    top_n_sigma: float = Field(default=-1.0)
    ignore_eos: bool = False
    grammar: str | None = Field(default=None, description="A GBNF grammar the output must follow.")
    json_schema: dict[str, Any] | None = Field(default=None, description="A JSON schema the output must follow.")
    priority: int = 0
    lora: dict[str, float] | None = Field(
        default=None, description="LoRA adapters (names the model was loaded with) and their scales; {} for none.")
    prompt_cache_key: str | None = Field(default=None, max_length=PROMPT_CACHE_KEY_MAX_LENGTH,
                                         description=_PROMPT_CACHE_KEY_HELP)


class CompletionRequest(Sampling):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(default="")
    suffix: str | None = None
    max_tokens: int | None = Field(default=16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(default=0.2, ge=0.0, le=10.0)
    max_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: str | None = None


class EmbeddingRequest(_Body):
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


class RerankRequest(_Body):
    query: str
    documents: list[str] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1)


class TokenizeRequest(_Body):
    input: str
    add_special: bool = Field(default=True, description="Add the BOS token where the model wants one.")
    special: bool = Field(default=True, description="Read special-token text as special tokens.")


class DetokenizeRequest(_Body):
    tokens: list[int]
