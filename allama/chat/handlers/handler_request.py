"""What a function-calling handler reads from a chat request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from allama.chat.handlers.turn import Turn
from allama.chat.request import ChatRequest, normalise_messages
from allama.gbnf import gbnf_literal
from allama.json_schema import ANY_JSON_GBNF, json_schema_to_gbnf

# Completion options a handler sets itself for each step, never passed on as they are.
_OWN = {"llama", "stream", "stream_options", "n"}


@dataclass
class HandlerRequest:
    llama: Any
    messages: list[dict[str, Any]]
    functions: list[dict[str, Any]]  # the offered functions ({"name", "description", "parameters"})
    choice: str | None  # "none", "auto", "required", or the name of the function to call
    legacy: bool  # the request used `functions`/`function_call` rather than tools
    parallel: bool
    stream: bool
    include_usage: bool
    stops: list[str]
    grammar: str | None  # the caller's grammar or response_format, for replies that are messages
    options: dict[str, Any]
    max_tokens: int | None
    logprobs: int | None

    @classmethod
    def read(cls, kwargs: dict[str, Any]) -> "HandlerRequest":
        if not kwargs.get("messages"):
            raise ValueError("messages must not be empty")
        if (kwargs.get("n") or 1) != 1:
            raise ValueError("this chat handler writes one choice per request (n=1)")
        chat = ChatRequest.read(kwargs)
        functions = [t["function"] for t in chat.tools or [] if t.get("type", "function") == "function"]
        if isinstance(chat.tool_choice, dict):
            choice: str | None = chat.tool_choice["function"]["name"]
        else:
            choice = chat.tool_choice if functions else "none"
        limit = chat.max_tokens
        return cls(
            llama=kwargs["llama"], messages=normalise_messages(kwargs["messages"]), functions=functions,
            choice=choice, legacy=chat.legacy, parallel=chat.parallel, stream=bool(kwargs.get("stream")),
            include_usage=bool((kwargs.get("stream_options") or {}).get("include_usage")), stops=chat.stops,
            grammar=str(chat.grammar) if chat.grammar is not None else None,
            options={k: v for k, v in chat.options.items() if k not in _OWN},
            max_tokens=limit if limit is not None and limit > 0 else None, logprobs=chat.logprobs)

    def function(self, name: str) -> dict[str, Any]:
        return next(f for f in self.functions if f["name"] == name)

    def arguments_grammar(self, name: str) -> str:
        """The grammar of `name`'s arguments: its parameters schema (any JSON object without one)."""
        parameters = self.function(name).get("parameters")
        return json_schema_to_gbnf(parameters) if parameters else ANY_JSON_GBNF

    def turn(self, prompt: str) -> Turn:
        model = self.options.pop("model", None) or self.llama.model_path
        return Turn(self.llama, prompt, self.options, max_tokens=self.max_tokens, logprobs=self.logprobs,
                    model=model)


def names_rule(names: Sequence[str]) -> str:
    """A GBNF alternation of the literal `names`."""
    return " | ".join(gbnf_literal(n) for n in names)
