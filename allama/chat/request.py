"""Reading an OpenAI chat request: messages as templates expect them, the legacy
`functions` as tools, and `response_format` as a grammar."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
        tools = [{"type": "function", "function": f} for f in functions]
        if isinstance(function_call, dict):
            tool_choice = {"type": "function", "function": {"name": function_call["name"]}}
        elif function_call in ("none", "auto"):
            tool_choice = function_call
    return tools, tool_choice or "auto"


def response_format_grammar(response_format: dict[str, Any]) -> str | None:
    """The grammar for OpenAI's response_format: json_object, json_schema, or text (none)."""
    from allama.grammar import json_schema_to_gbnf

    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return json_schema_to_gbnf(response_format.get("schema") or {"type": "object"})
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema", spec if "type" in spec or "properties" in spec else None)
        if schema is None:
            raise ValueError("response_format json_schema needs json_schema.schema")
        return json_schema_to_gbnf(schema)
    raise ValueError(f"response_format type must be text, json_object or json_schema, not {kind!r}")
