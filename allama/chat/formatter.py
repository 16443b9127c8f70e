"""Rendering chat messages into a prompt.

`Jinja2ChatFormatter` renders a model's own chat template (as shipped in GGUF
metadata) in Jinja2's immutable sandbox, with the helpers real templates use:
`raise_exception`, `strftime_now`, `tojson` with json.dumps' arguments, and
loop controls. A template that reaches for Python internals (the
CVE-2024-34359 family) raises `TemplateError` and executes nothing.
`ChatFormatterHandler` makes any formatter a chat completion handler.
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jinja2
import jinja2.ext
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

import numpy as np


class TemplateError(ValueError):
    """A chat template failed to render: its own raise_exception, bad syntax, or a sandbox violation."""


@dataclass
class ChatFormatterResponse:
    """A rendered prompt and what ends its completion."""

    prompt: str
    stop: str | list[str] | None = None
    stopping_criteria: Callable[[np.ndarray, np.ndarray], bool] | None = None
    added_special: bool = False  # the prompt text already holds BOS and other special tokens


class ChatFormatter(Protocol):
    def __call__(self, *, messages: Sequence[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse: ...


class _GenerationTag(jinja2.ext.Extension):
    """Hugging Face's `{% generation %}...{% endgeneration %}` marks; rendered as their body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> list[jinja2.nodes.Node]:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _json_default(value: Any) -> Any:
    """Lets tojson serialise what Jinja2 filters produce: generators and other iterables."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return list(value)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys,
                      default=_json_default)


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


class ChatTemplateSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, except that lists and dicts may be changed in place.

    Real templates build lists with `.append()` (Kimi K2's, for one). That is safe
    here because templates only ever see deep copies of the caller's data; access
    to Python internals (what template-injection payloads need) stays blocked by
    the sandbox's attribute checks.
    """

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, (list, dict)) and not attr.startswith("_"):
            return super(ImmutableSandboxedEnvironment, self).is_safe_attribute(obj, attr, value)
        return super().is_safe_attribute(obj, attr, value)


def make_environment(sandboxed: bool = True) -> jinja2.Environment:
    """The Jinja2 environment chat templates render in (sandboxed unless asked otherwise)."""
    cls = ChatTemplateSandbox if sandboxed else jinja2.Environment
    env = cls(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
              extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    return env


def family_variables(template: str, tools: Any) -> dict[str, Any]:
    """Variables a template family reads beyond the usual ones, as its models' own callers
    pass them: firefunction-v2 (recognised by its `functools[` call marker) takes the tools
    as JSON text in `functions` and the current time in `datetime`."""
    if " functools[" in template:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%b %d %Y %H:%M:%S GMT")
        return {"functions": json.dumps(tools, indent=2) if tools else "", "datetime": now}
    return {}


class Jinja2ChatFormatter:
    """Renders messages with a Jinja2 chat template (llama-cpp-python's interface)."""

    def __init__(self, template: str, eos_token: str, bos_token: str, add_generation_prompt: bool = True,
                 stop_token_ids: Sequence[int] | None = None, writes_special: bool = True) -> None:
        self.template = template
        # whether the template writes BOS itself (model templates do; the multimodal
        # presets leave it to tokenization, which adds it where the model wants one)
        self.writes_special = writes_special
        self.eos_token = eos_token
        self.bos_token = bos_token
        self.add_generation_prompt = add_generation_prompt
        self.stop_token_ids = set(stop_token_ids) if stop_token_ids is not None else None
        try:
            self._compiled = make_environment().from_string(template)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"the chat template does not parse: {exc}") from exc

    def __call__(self, *, messages: Sequence[dict[str, Any]], functions: Any = None, function_call: Any = None,
                 tools: Any = None, tool_choice: Any = None, **kwargs: Any) -> ChatFormatterResponse:
        # Templates may change what they are given: they get copies.
        variables = copy.deepcopy(dict(kwargs))
        variables.setdefault("add_generation_prompt", self.add_generation_prompt)
        family = family_variables(self.template, tools)
        if functions is None and "functions" in family:
            functions = family.pop("functions")
        for key, value in family.items():
            variables.setdefault(key, value)
        try:
            prompt = self._compiled.render(
                messages=copy.deepcopy(list(messages)), eos_token=self.eos_token, bos_token=self.bos_token,
                functions=copy.deepcopy(functions), function_call=copy.deepcopy(function_call),
                tools=copy.deepcopy(tools), tool_choice=copy.deepcopy(tool_choice), **variables)
        except TemplateError:
            raise
        except SecurityError as exc:
            raise TemplateError(f"the chat template tried an unsafe operation: {exc}") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"the chat template failed: {exc}") from exc
        stopping_criteria = None
        if self.stop_token_ids is not None:
            stop_ids = self.stop_token_ids

            def stop_on_token(tokens: np.ndarray, logits: np.ndarray) -> bool:
                return int(tokens[-1]) in stop_ids

            stopping_criteria = stop_on_token
        return ChatFormatterResponse(prompt=prompt, stop=[self.eos_token] if self.eos_token else None,
                                     stopping_criteria=stopping_criteria, added_special=self.writes_special)

    # llama-cpp-python names this method format_messages in its docs
    def format_messages(self, messages: Sequence[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
        return self(messages=messages, **kwargs)

    def to_chat_handler(self) -> Any:
        """This formatter as a chat completion handler (for `Llama(chat_handler=...)`)."""
        return ChatFormatterHandler(self)


class ChatFormatterHandler:
    """A chat formatter as a chat completion handler: the Llama's usual chat completion
    (tools, response_format, streams, stop strings) with this formatter's prompts.

    Works with `Llama(chat_handler=...)` and `allama.sync.Llama(chat_handler=...)`; called
    directly, it returns what `llama.create_chat_completion` returns (a coroutine for
    allama.Llama, the response for the blocking twin).
    """

    on_event_loop = True  # it only starts the Llama's own (async) chat completion

    def __init__(self, formatter: ChatFormatter) -> None:
        if not callable(formatter):
            raise TypeError(f"a chat formatter must be callable, not {type(formatter).__name__}")
        self.formatter = formatter

    def __call__(self, *, llama: Any, messages: Sequence[dict[str, Any]], **request: Any) -> Any:
        return llama.create_chat_completion(messages=messages, _chat_formatter=self.formatter, **request)

    def __repr__(self) -> str:
        return f"ChatFormatterHandler({self.formatter!r})"
