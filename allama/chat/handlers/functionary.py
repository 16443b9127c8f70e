"""The `functionary` handler: the first functionary models' prompt format.

Turns are `user:\\n</s>...</s>`, `assistant:\\n...`, a call is `assistant to=functions.<name>:`
and its JSON arguments, a result `function name=functions.<name>:`. The functions are shown
as TypeScript-like signatures. One call per turn. The prompt is the one llama-cpp-python
0.3.36 renders (tests/chat/goldens) except: functions offered as tools are listed once
(llama-cpp-python lists them twice), and earlier tool calls and tool results name the
function rather than the call id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from allama.chat.handlers.handler_request import HandlerRequest, names_rule
from allama.chat.handlers.turn import Arguments, CallStart, Content, Finish, Turn, TurnEvent, turn_chunks, turn_response
from allama.chat.handlers.typescript_signatures import functions_namespace
from allama.chat.tool_calls import arguments_json

# Functionary's system prompt (a fact of its prompt format).
SYSTEM_MESSAGE = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions. The assistant calls functions with appropriate "
    "input when necessary"
)
_STOPS = ["user:", "</s>"]


def render_prompt(messages: list[dict[str, Any]], functions: list[dict[str, Any]]) -> str:
    """The prompt up to the assistant's turn (`...assistant`, without the colon)."""
    names = _call_names(messages)
    out = []
    if functions:
        out.append(f"system:\n{functions_namespace(functions, indent=True)}\n")
    out.append(f"system:\n{SYSTEM_MESSAGE}\n")
    for m in messages:
        role, content = m["role"], m.get("content")
        if role == "system":
            out.append(f"system:\n{content}\n")
        elif role == "user":
            out.append(f"user:\n</s>{content or ''}</s>\n")
        elif role in ("function", "tool"):
            name = m.get("name") if role == "function" else names.get(m.get("tool_call_id"), m.get("tool_call_id"))
            out.append(f"function name=functions.{name}:\n{content}\n" if content is not None
                       else f"function name=functions.{name}\n")
        elif role == "assistant":
            calls = [c["function"] for c in m.get("tool_calls") or []]
            if m.get("function_call"):
                calls.append(m["function_call"])
            if content is not None:
                out.append(f"assistant:\n{content}\n")
            for call in calls:
                out.append(f"assistant to=functions.{call['name']}:\n{arguments_json(call.get('arguments', ''))}</s>\n")
        else:
            raise ValueError(f"the functionary format has no role {role!r}")
    out.append("assistant")
    return "".join(out)


def _call_names(messages: list[dict[str, Any]]) -> dict[Any, str]:
    """Tool call id -> function name, from the assistant messages."""
    return {c.get("id"): c["function"]["name"] for m in messages if m["role"] == "assistant"
            for c in m.get("tool_calls") or []}


async def _events(request: HandlerRequest, turn: Turn) -> AsyncIterator[TurnEvent]:
    choice = request.choice
    if choice == "auto" or choice == "required":
        alternatives = f'" to=functions." ( {names_rule([f["name"] for f in request.functions])} ) ":"'
        head = await turn.complete(grammar="root ::= " + alternatives + (' | ":"' if choice == "auto" else ""),
                                   temperature=0.0)
        if head.finish_reason == "length":
            yield Finish("length")
            return
        choice = head.text[len(" to=functions."):-1] if head.text.startswith(" to=") else "none"
    if choice == "none":
        turn.prompt += ":\n"
        async for text, logprobs in turn.run(stop=[*request.stops, *_STOPS], grammar=request.grammar,
                                             logprobs=True):
            yield Content(text, logprobs)
        yield Finish(turn.last.finish_reason or "stop")
        return
    yield CallStart(choice)  # type: ignore[arg-type]
    turn.prompt += f" to=functions.{choice}:\n"
    async for text, _ in turn.run(stop=_STOPS, grammar=request.arguments_grammar(choice)):  # type: ignore[arg-type]
        yield Arguments(text)
    yield Finish(turn.last.finish_reason or "stop")


async def functionary(**kwargs: Any) -> Any:
    request = HandlerRequest.read(kwargs)
    turn = request.turn(render_prompt(request.messages, request.functions))
    events = _events(request, turn)
    if request.stream:
        return turn_chunks(turn, events, request.include_usage)
    return await turn_response(turn, events, request.legacy)
