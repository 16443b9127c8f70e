"""What a function-calling handler reads from a chat request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from allama.chat.handlers.turn import Turn
from allama.arguments import stop_strings
from allama.chat.request import check_tools, legacy_functions_as_tools, normalise_messages, response_format_grammar
from allama.gbnf import gbnf_literal
from allama.json_schema import ANY_JSON_GBNF, json_schema_to_gbnf

# Request fields a handler consumes itself; the rest are sampling options for every step.
_OWN = {"llama", "messages", "functions", "function_call", "tools", "tool_choice", "stream", "stop",
        "max_tokens", "max_completion_tokens", "logprobs", "top_logprobs", "response_format",
        "chat_template_kwargs", "reasoning_effort", "parallel_tool_calls", "stream_options", "n", "grammar"}


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
        legacy = bool(kwargs.get("functions")) and not kwargs.get("tools")
        tools, tool_choice = legacy_functions_as_tools(kwargs.get("tools"), kwargs.get("tool_choice"),
                                                       kwargs.get("functions"), kwargs.get("function_call"))
        check_tools(tools, tool_choice)
        functions = [t["function"] for t in tools or [] if t.get("type", "function") == "function"]
        if isinstance(tool_choice, dict):
            choice: str | None = tool_choice["function"]["name"]
        else:
            choice = tool_choice if functions else "none"
        grammar = kwargs.get("grammar")
        if kwargs.get("response_format") is not None:
            grammar = response_format_grammar(kwargs["response_format"]) or grammar
        limit = kwargs.get("max_completion_tokens")
        limit = kwargs.get("max_tokens") if limit is None else limit
        options = {k: v for k, v in kwargs.items() if k not in _OWN}
        return cls(
            llama=kwargs["llama"], messages=normalise_messages(kwargs["messages"]), functions=functions,
            choice=choice, legacy=legacy, parallel=bool(kwargs.get("parallel_tool_calls", True)),
            stream=bool(kwargs.get("stream")),
            include_usage=bool((kwargs.get("stream_options") or {}).get("include_usage")),
            stops=stop_strings(kwargs.get("stop")),
            grammar=str(grammar) if grammar is not None else None, options=options,
            max_tokens=limit if limit is not None and limit > 0 else None,
            logprobs=(kwargs.get("top_logprobs") or 0) if kwargs.get("logprobs") else None)

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
