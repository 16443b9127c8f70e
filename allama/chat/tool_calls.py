"""Tool calls: reading them out of model text, and grammars that force them.

Parsers cover the common families' output formats:
- Hermes / Qwen: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (one or more)
- Mistral: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]` and `[TOOL_CALLS]name[ARGS]{...}`
- Llama 3.1: a whole reply that is `{"name": ..., "parameters": {...}}` (optionally after
  `<|python_tag|>`), several separated by `;`
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from allama.json_schema import json_schema_to_gbnf
from allama.marker_prefix import held_suffix

_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
_MISTRAL_ARGS = re.compile(r"\[TOOL_CALLS\]\s*([A-Za-z0-9_.\-]+)\[ARGS\]", re.S)


@dataclass
class ToolCall:
    name: str
    arguments: Any  # a dict (or whatever JSON the model wrote)
    id: str | None = None

    def as_openai(self) -> dict[str, Any]:
        return {"id": self.id or f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                "function": {"name": self.name, "arguments": arguments_json(self.arguments)}}


def arguments_json(arguments: Any) -> str:
    """A call's arguments as OpenAI sends them: JSON text (a string stays as it is)."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def _call_from(obj: Any) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # OpenAI-shaped
        obj = {**obj["function"], "id": obj.get("id")}
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    return ToolCall(name, arguments, obj.get("id") if isinstance(obj.get("id"), str) else None)


def _json_values(text: str) -> list[Any] | None:
    """Every JSON value in `text`, separated by whitespace or ';', or None if anything else is there."""
    decoder = json.JSONDecoder()
    values, pos = [], 0
    while True:
        while pos < len(text) and (text[pos].isspace() or text[pos] == ";"):
            pos += 1
        if pos == len(text):
            return values
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return None
        values.append(value)


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """Splits model output into (content, tool calls); content is what remains outside the markup."""
    # Hermes / Qwen
    if "<tool_call>" in text:
        calls = []
        for body in _HERMES.findall(text):
            values = _json_values(body)
            call = _call_from(values[0]) if values else None
            if call is not None:
                calls.append(call)
        if calls:
            return _HERMES.sub("", text).strip(), calls
    # Mistral
    if "[TOOL_CALLS]" in text:
        head, _, tail = text.partition("[TOOL_CALLS]")
        named = list(_MISTRAL_ARGS.finditer(text))
        if named:
            calls = []
            for i, match in enumerate(named):
                end = named[i + 1].start() if i + 1 < len(named) else len(text)
                values = _json_values(text[match.end():end])
                if values:
                    calls.append(ToolCall(match.group(1), values[0]))
            if calls:
                return head.strip(), calls
        values = _json_values(tail)
        if values:
            items = values[0] if isinstance(values[0], list) else values
            calls = [c for c in (_call_from(v) for v in items) if c is not None]
            if calls:
                return head.strip(), calls
    # Llama 3.1 JSON calls
    body = text.strip()
    if body.startswith("<|python_tag|>"):
        body = body[len("<|python_tag|>"):]
    if body.startswith("{") or body.startswith("["):
        values = _json_values(body)
        if values:
            items = values[0] if len(values) == 1 and isinstance(values[0], list) else values
            calls = [_call_from(v) for v in items]
            if calls and all(c is not None for c in calls):
                return "", calls  # type: ignore[return-value]
    return text, []


def tool_call_grammar(tools: list[dict[str, Any]], name: str | None, hermes_tags: bool, parallel: bool) -> str:
    """A grammar that forces tool calls: one (or, with `parallel`, several) of `tools`, or the
    named one, each as {"name": ..., "arguments": <its parameters schema>}, wrapped in
    <tool_call> tags when the model's template uses them."""
    functions = [t["function"] for t in tools if t.get("type", "function") == "function" and "function" in t]
    if name is not None:
        functions = [f for f in functions if f.get("name") == name]
        if not functions:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools")
    if not functions:
        raise ValueError("tools must hold at least one function")
    options = [{"type": "object", "properties": {"name": {"const": f["name"]},
                                                 "arguments": f.get("parameters") or {"type": "object"}},
                "required": ["name", "arguments"]} for f in functions]
    call_grammar = json_schema_to_gbnf(options[0] if len(options) == 1 else {"anyOf": options})
    call_grammar = call_grammar.replace("root ::= ", "call-json ::= ", 1)
    call = '"<tool_call>\\n" call-json "\\n</tool_call>"' if hermes_tags else "call-json"
    root = f'root ::= {call} ( "\\n" {call} )*' if parallel else f"root ::= {call}"
    return root + "\n" + call_grammar


MARKERS = ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>")
_MARKER_STARTS = frozenset(m[0] for m in MARKERS)  # text without these cannot start a marker


class ToolCallSplitter:
    """Streams a reply's content while keeping tool-call markup out of it.

    Text is passed on as content until a tool-call marker starts (a possible partial
    marker at the end is held back); from the marker on, everything is kept for
    `finish()`, which reads the calls. A reply that opens with a JSON value (Llama 3.1's
    calls) is kept whole.
    """

    def __init__(self) -> None:
        self._held = ""
        self._tail: str | None = None  # text from the first marker on
        self._started = False

    def feed(self, text: str) -> str:
        """The content that can be sent now."""
        if self._tail is not None:
            self._tail += text
            return ""
        buf = self._held + text
        if not self._started:
            stripped = buf.lstrip()
            if not stripped:
                self._held = buf
                return ""
            self._started = True
            if stripped[0] in "{[":
                self._tail = buf
                self._held = ""
                return ""
        if not self._held and _MARKER_STARTS.isdisjoint(buf):
            return buf  # (most streamed text: no search)
        cut = min((i for i in (buf.find(m) for m in MARKERS) if i != -1), default=-1)
        if cut != -1:
            self._tail = buf[cut:]
            self._held = ""
            return buf[:cut]
        hold = held_suffix(buf, MARKERS)
        self._held = buf[len(buf) - hold:] if hold else ""
        return buf[: len(buf) - hold]

    def finish(self) -> tuple[str, list[ToolCall]]:
        """(content still to send, tool calls) at the end of the reply."""
        if self._tail is None:
            held, self._held = self._held, ""
            return held, []
        content, calls = parse_tool_calls(self._tail)
        return (content, calls) if calls else (self._tail, [])
