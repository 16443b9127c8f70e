"""Reading an OpenAI chat request: messages as templates expect them, the legacy
`functions` as tools, and `response_format` as a grammar."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
