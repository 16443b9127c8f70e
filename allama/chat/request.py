"""Reading an OpenAI chat request: messages as templates expect them, the legacy
`functions` as tools, `response_format` as a grammar; ChatRequest holds what every chat
path (the default one and the function-calling handlers) reads the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from allama.arguments import stop_strings
from allama.json_schema import json_schema_to_gbnf

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
TOOL_CHOICES = ("none", "auto", "required")


def check_messages(messages: Any) -> None:
    """OpenAI's message list: dicts with one of its roles, and content that is a string, a
    list of content parts, or None (a TypeError or ValueError naming the message)."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of message dicts, not {type(messages).__name__}")
    if not messages:
        raise ValueError("messages must not be empty")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"messages[{i}] must be a dict, not {type(message).__name__}")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise ValueError(f"messages[{i}] has role {role!r}; roles are {', '.join(ROLES)}")
        content = message.get("content")
        if not (content is None or isinstance(content, str)
                or (isinstance(content, list) and all(isinstance(part, Mapping) for part in content))):
            raise TypeError(f"messages[{i}].content must be a string, a list of content parts (dicts) or null")
        calls = message.get("tool_calls")
        if calls is not None and not (isinstance(calls, list) and all(isinstance(c, Mapping) for c in calls)):
            raise TypeError(f"messages[{i}].tool_calls must be a list of tool call dicts")


def check_tools(tools: Any, tool_choice: Any) -> None:
    """tools: a list of tools, each function with a name (and a dict of parameters, if any);
    tool_choice: none, auto, required, or {"type": "function", "function": {"name": one of them}}."""
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, Mapping) for t in tools):
            raise TypeError("tools (or functions) must be a list of tool dicts")
        for tool in tools:
            if tool.get("type", "function") != "function":
                continue
            function = tool.get("function")
            if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
                raise ValueError("each function tool needs a function with a name: "
                                 "{'type': 'function', 'function': {'name': ..., 'parameters': {...}}}")
            if function.get("parameters") is not None and not isinstance(function["parameters"], (Mapping, bool)):
                raise TypeError(f"the parameters of function {function['name']!r} must be a JSON schema (a dict)")
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise ValueError("tool_choice must be none, auto, required or "
                             "{'type': 'function', 'function': {'name': ...}}")
        names = {t["function"]["name"] for t in tools or () if t.get("type", "function") == "function"}
        if name not in names:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools")
    elif tool_choice is not None and tool_choice not in TOOL_CHOICES:
        raise ValueError(f"tool_choice must be none, auto, required or a function, not {tool_choice!r}")


def normalise_messages(messages: Sequence[dict[str, Any]], keep_parts: bool = False) -> list[dict[str, Any]]:
    """OpenAI messages as chat templates expect them: the `developer` role read as `system`,
    and text content parts joined into a string (unless `keep_parts`: for templates that place
    media parts themselves)."""
    out = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message:
            raise ValueError("each message must be a dict with a 'role'")
        message = dict(message)
        if message["role"] == "developer":
            message["role"] = "system"
        content = message.get("content")
        if isinstance(content, list) and not keep_parts:
            parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if len(parts) != len(content):
                raise ValueError("this model takes text content parts only (no images or audio)")
            message["content"] = "".join(parts)
        out.append(message)
    return out


def legacy_functions_as_tools(tools: Any, tool_choice: Any, functions: Any, function_call: Any) -> tuple[Any, Any]:
    """OpenAI's deprecated functions/function_call, expressed as tools/tool_choice."""
    if functions and not tools:
        if not isinstance(functions, list):
            raise TypeError("functions must be a list of function dicts")
        tools = [{"type": "function", "function": f} for f in functions]
        if isinstance(function_call, dict):
            if not isinstance(function_call.get("name"), str):
                raise ValueError("function_call must be none, auto or {'name': ...}")
            tool_choice = {"type": "function", "function": {"name": function_call["name"]}}
        elif function_call in ("none", "auto"):
            tool_choice = function_call
    return tools, tool_choice or "auto"


def response_format_grammar(response_format: dict[str, Any]) -> str | None:
    """The grammar for OpenAI's response_format: json_object, json_schema, or text (none)."""
    if not isinstance(response_format, Mapping):
        raise TypeError(f"response_format must be a dict such as {{'type': 'json_object'}}, "
                        f"not {type(response_format).__name__}")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return json_schema_to_gbnf(response_format.get("schema") or {"type": "object"})
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        if not isinstance(spec, Mapping):
            raise TypeError("response_format json_schema must be a dict: {'name': ..., 'schema': {...}}")
        schema = spec.get("schema", spec if "type" in spec or "properties" in spec else None)
        if schema is None:
            raise ValueError("response_format json_schema needs json_schema.schema")
        return json_schema_to_gbnf(schema)
    raise ValueError(f"response_format type must be text, json_object or json_schema, not {kind!r}")


# The chat-level fields of a request: ChatRequest reads them; the rest are completion options.
CHAT_FIELDS = frozenset({"messages", "functions", "function_call", "tools", "tool_choice", "stop", "max_tokens",
                         "max_completion_tokens", "logprobs", "top_logprobs", "response_format", "grammar",
                         "chat_template_kwargs", "reasoning_effort", "parallel_tool_calls"})


@dataclass
class ChatRequest:
    """A chat request's fields as a chat path uses them (the messages aside)."""

    tools: list[dict[str, Any]] | None  # `functions` read as tools
    tool_choice: Any
    legacy: bool  # the request used `functions`/`function_call` rather than tools
    parallel: bool  # parallel_tool_calls
    stops: list[str]  # the caller's stop strings
    max_tokens: int | None  # max_completion_tokens, else max_tokens (as given)
    logprobs: int | None  # how many alternatives per token (top_logprobs), when logprobs is asked for
    grammar: Any  # response_format's grammar, else the caller's
    template_vars: dict[str, Any]  # chat_template_kwargs, and reasoning_effort
    options: dict[str, Any]  # every other field: completion options

    @classmethod
    def read(cls, request: Mapping[str, Any]) -> "ChatRequest":
        tools, tool_choice = legacy_functions_as_tools(request.get("tools"), request.get("tool_choice"),
                                                       request.get("functions"), request.get("function_call"))
        check_tools(tools, tool_choice)
        grammar = request.get("grammar")
        if request.get("response_format") is not None:
            grammar = response_format_grammar(request["response_format"]) or grammar
        limit = request.get("max_completion_tokens")
        template_vars = dict(request.get("chat_template_kwargs") or {})
        if request.get("reasoning_effort") is not None:
            template_vars.setdefault("reasoning_effort", request["reasoning_effort"])
        return cls(
            tools=tools, tool_choice=tool_choice, legacy=bool(request.get("functions")) and not request.get("tools"),
            parallel=bool(request.get("parallel_tool_calls", True)), stops=stop_strings(request.get("stop")),
            max_tokens=request.get("max_tokens") if limit is None else limit,
            logprobs=(request.get("top_logprobs") or 0) if request.get("logprobs") else None,
            grammar=grammar, template_vars=template_vars,
            options={k: v for k, v in request.items() if k not in CHAT_FIELDS})
