"""OpenAI-shaped TypedDicts for what allama takes and returns (llama-cpp-python's
`llama_types` names, aliases included), for type checkers: responses are plain dicts.

Fields OpenAI marks optional, and llama-cpp-python's and allama's additions
(`usage.prompt_tokens_details`, `message.reasoning_content`, ...), are `NotRequired`.
"""

from __future__ import annotations

from typing import Any, Literal, Union

try:  # typing_extensions' TypedDict (anyio brings it below Python 3.13) is the one pydantic validates
    from typing_extensions import NotRequired, TypedDict
except ImportError:  # pragma: no cover - Python 3.13+ without typing_extensions
    from typing import NotRequired, TypedDict

JsonType = Union[None, int, float, str, bool, list[Any], dict[str, Any]]

# --- usage -------------------------------------------------------------------------------


class PromptTokensDetails(TypedDict):
    cached_tokens: int  # prompt tokens served from KV the engine already held


class CompletionUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: NotRequired[PromptTokensDetails]


class EmbeddingUsage(TypedDict):
    prompt_tokens: int
    total_tokens: int


# --- completions -------------------------------------------------------------------------


class CompletionLogprobs(TypedDict):
    text_offset: list[int]
    token_logprobs: list[float | None]
    tokens: list[str]
    top_logprobs: list[dict[str, float] | None]


class CompletionChoice(TypedDict):
    text: str
    index: int
    logprobs: CompletionLogprobs | None
    finish_reason: Literal["stop", "length"] | None


class CreateCompletionResponse(TypedDict):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: NotRequired[CompletionUsage]


CreateCompletionStreamResponse = CreateCompletionResponse
CompletionChunk = CreateCompletionResponse
Completion = CreateCompletionResponse

# --- embeddings and reranking ------------------------------------------------------------


class Embedding(TypedDict):
    index: int
    object: str
    embedding: list[float] | list[list[float]] | str  # str: base64 (encoding_format="base64")


EmbeddingData = Embedding


class CreateEmbeddingResponse(TypedDict):
    object: Literal["list"]
    model: str
    data: list[Embedding]
    usage: EmbeddingUsage


class RerankResult(TypedDict):
    index: int
    relevance_score: float
    document: NotRequired[str | dict[str, str]]


class RerankResponse(TypedDict):
    model: str
    results: list[RerankResult]
    usage: NotRequired[EmbeddingUsage]


# --- chat: requests ----------------------------------------------------------------------


class ChatCompletionRequestMessageContentPartText(TypedDict):
    type: Literal["text"]
    text: str


class ChatCompletionRequestMessageContentPartImageImageUrl(TypedDict):
    url: str
    detail: NotRequired[Literal["auto", "low", "high"]]


class ChatCompletionRequestMessageContentPartImage(TypedDict):
    type: Literal["image_url"]
    image_url: str | ChatCompletionRequestMessageContentPartImageImageUrl


class ChatCompletionRequestMessageContentPartInputAudioData(TypedDict):
    data: str  # base64
    format: Literal["wav", "mp3"]


class ChatCompletionRequestMessageContentPartInputAudio(TypedDict):
    type: Literal["input_audio"]
    input_audio: ChatCompletionRequestMessageContentPartInputAudioData


ChatCompletionRequestMessageContentPart = Union[
    ChatCompletionRequestMessageContentPartText,
    ChatCompletionRequestMessageContentPartImage,
    ChatCompletionRequestMessageContentPartInputAudio,
]


class ChatCompletionRequestSystemMessage(TypedDict):
    role: Literal["system", "developer"]
    content: str | None
    name: NotRequired[str]


class ChatCompletionRequestUserMessage(TypedDict):
    role: Literal["user"]
    content: str | list[ChatCompletionRequestMessageContentPart] | None
    name: NotRequired[str]


class ChatCompletionMessageToolCallFunction(TypedDict):
    name: str
    arguments: str  # JSON text


class ChatCompletionMessageToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: ChatCompletionMessageToolCallFunction


ChatCompletionMessageToolCalls = list[ChatCompletionMessageToolCall]


class ChatCompletionRequestAssistantMessageFunctionCall(TypedDict):
    name: str
    arguments: str


class ChatCompletionRequestAssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: NotRequired[str | None]
    tool_calls: NotRequired[ChatCompletionMessageToolCalls]
    function_call: NotRequired[ChatCompletionRequestAssistantMessageFunctionCall]
    name: NotRequired[str]


class ChatCompletionRequestToolMessage(TypedDict):
    role: Literal["tool"]
    content: str | None
    tool_call_id: str


class ChatCompletionRequestFunctionMessage(TypedDict):
    role: Literal["function"]
    content: str | None
    name: str


ChatCompletionRequestMessage = Union[
    ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage,
    ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestToolMessage,
    ChatCompletionRequestFunctionMessage,
]

ChatCompletionFunctionParameters = dict[str, JsonType]


class ChatCompletionFunction(TypedDict):
    name: str
    description: NotRequired[str]
    parameters: ChatCompletionFunctionParameters


ChatCompletionFunctions = ChatCompletionFunction
ChatCompletionResponseFunction = ChatCompletionFunction


class ChatCompletionToolFunction(TypedDict):
    name: str
    description: NotRequired[str]
    parameters: ChatCompletionFunctionParameters
    strict: NotRequired[bool]


class ChatCompletionTool(TypedDict):
    type: Literal["function"]
    function: ChatCompletionToolFunction


class ChatCompletionNamedToolChoiceFunction(TypedDict):
    name: str


class ChatCompletionNamedToolChoice(TypedDict):
    type: Literal["function"]
    function: ChatCompletionNamedToolChoiceFunction


ChatCompletionToolChoiceOption = Union[Literal["none", "auto", "required"], ChatCompletionNamedToolChoice]


class ChatCompletionRequestFunctionCallOption(TypedDict):
    name: str


ChatCompletionFunctionCallOption = ChatCompletionRequestFunctionCallOption
ChatCompletionRequestFunctionCall = Union[Literal["none", "auto"], ChatCompletionRequestFunctionCallOption]


class ChatCompletionRequestResponseFormatJsonSchema(TypedDict):
    name: NotRequired[str]
    schema: NotRequired[dict[str, JsonType]]
    strict: NotRequired[bool]


class ChatCompletionRequestResponseFormat(TypedDict):
    type: Literal["text", "json_object", "json_schema"]
    schema: NotRequired[dict[str, JsonType]]  # llama-cpp-python's json_object schema
    json_schema: NotRequired[ChatCompletionRequestResponseFormatJsonSchema]


# --- chat: responses ---------------------------------------------------------------------


class ChatCompletionResponseFunctionCall(TypedDict):
    name: str
    arguments: str


ChatCompletionFunctionCall = ChatCompletionResponseFunctionCall


class ChatCompletionResponseMessage(TypedDict):
    role: Literal["assistant", "function"]
    content: str | None
    reasoning_content: NotRequired[str]
    tool_calls: NotRequired[ChatCompletionMessageToolCalls]
    function_call: NotRequired[ChatCompletionResponseFunctionCall]


ChatCompletionMessage = ChatCompletionResponseMessage


class ChatCompletionTopLogprobToken(TypedDict):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatCompletionLogprobToken(ChatCompletionTopLogprobToken):
    top_logprobs: list[ChatCompletionTopLogprobToken]


class ChatCompletionLogprobs(TypedDict):
    content: list[ChatCompletionLogprobToken] | None
    refusal: NotRequired[list[ChatCompletionLogprobToken] | None]


class ChatCompletionResponseChoice(TypedDict):
    index: int
    message: ChatCompletionResponseMessage
    logprobs: ChatCompletionLogprobs | None
    finish_reason: Literal["stop", "length", "tool_calls", "function_call"] | None


ChatCompletionChoice = ChatCompletionResponseChoice


class CreateChatCompletionResponse(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatCompletionResponseChoice]
    usage: CompletionUsage


ChatCompletion = CreateChatCompletionResponse


class ChatCompletionMessageToolCallChunkFunction(TypedDict):
    name: NotRequired[str]
    arguments: str


class ChatCompletionMessageToolCallChunk(TypedDict):
    index: int
    id: NotRequired[str]
    type: NotRequired[Literal["function"]]
    function: ChatCompletionMessageToolCallChunkFunction


class ChatCompletionStreamResponseDeltaEmpty(TypedDict):
    pass


ChatCompletionChunkDeltaEmpty = ChatCompletionStreamResponseDeltaEmpty


class ChatCompletionStreamResponseDeltaFunctionCall(TypedDict):
    name: NotRequired[str]
    arguments: str


class ChatCompletionStreamResponseDelta(TypedDict):
    role: NotRequired[Literal["system", "user", "assistant", "tool"]]
    content: NotRequired[str | None]
    reasoning_content: NotRequired[str]
    tool_calls: NotRequired[list[ChatCompletionMessageToolCallChunk]]
    function_call: NotRequired[ChatCompletionStreamResponseDeltaFunctionCall]


ChatCompletionChunkDelta = ChatCompletionStreamResponseDelta


class ChatCompletionStreamResponseChoice(TypedDict):
    index: int
    delta: ChatCompletionStreamResponseDelta | ChatCompletionStreamResponseDeltaEmpty
    finish_reason: Literal["stop", "length", "tool_calls", "function_call"] | None
    logprobs: NotRequired[ChatCompletionLogprobs | None]


ChatCompletionChunkChoice = ChatCompletionStreamResponseChoice


class CreateChatCompletionStreamResponse(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatCompletionStreamResponseChoice]
    usage: NotRequired[CompletionUsage]


ChatCompletionChunk = CreateChatCompletionStreamResponse
ChatCompletionStreamResponse = CreateChatCompletionStreamResponse
