"""The `chatml-function-calling` handler: function calling for any ChatML model.

The system message lists the functions; the model answers either `message:` and a reply,
or `functions.<name>:` and the JSON arguments, one call per line. Grammars steer each step:
what to do (greedy), then the arguments to the function's schema, then whether another
call follows. The prompt is the one llama-cpp-python 0.3.36 renders for this handler
(tests/chat/goldens), except where that one loses information: tool results are rendered
(llama-cpp-python drops them), message text is not HTML-escaped, and several calls in an
earlier assistant turn are written one per line, as the model is asked to write them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from allama.chat.handlers.handler_request import HandlerRequest, names_rule
from allama.chat.handlers.turn import (MAX_CALLS, Arguments, CallStart, Content, Finish, Turn, TurnEvent, turn_chunks,
                                      turn_response)
from allama.chat.tool_calls import arguments_json

END = "<|im_end|>"

# The instructions of the format, word for word (a fact of the prompt format).
_USAGE = (
    "\n\nYou can respond to users messages with either a single message or one or more function calls."
    "\n\nTo respond with a message begin the message with 'message:', use the following format:"
    "\n\nmessage:\n<message>"
    "\n\nTo respond with one or more function calls begin the message with 'functions.<function_name>:', "
    "use the following format:"
    '\n\nfunctions.<function_name>:\n{ "arg1": "value1", "arg2": "value2" }'
    '\nfunctions.<function_name>:\n{ "arg1": "value1", "arg2": "value2" }'
)


def render_prompt(messages: list[dict[str, Any]], functions: list[dict[str, Any]]) -> str:
    """The ChatML prompt; `functions` (offered tools) are listed in the system message."""
    out = []
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        out.append(f"<|im_start|>{role}\n")
        if role == "system":
            out.append(content)
            if functions:
                out.append("\n\nYou have access to the following functions:\n")
                for f in functions:
                    out.append(f"\nfunctions.{f['name']}:\n{json.dumps(f.get('parameters') or {}, sort_keys=True)}\n")
                out.append(_USAGE)
            out.append(f"{END}\n")
        elif role == "assistant":
            if content:
                out.append(("message:\n" if functions else "") + content + f"{END}\n")
            calls = message.get("tool_calls") or []
            if message.get("function_call"):
                calls = [*calls, {"function": message["function_call"]}]
            if calls:
                out.append("\n".join(f"functions.{c['function']['name']}:\n{arguments_json(c['function'].get('arguments', ''))}"
                                     for c in calls) + f"{END}\n")
        else:  # user, tool, function
            out.append(content + f"{END}\n")
    out.append("<|im_start|>assistant\n")
    return "".join(out)


async def _events(request: HandlerRequest, turn: Turn) -> AsyncIterator[TurnEvent]:
    choice = request.choice
    if choice == "none":
        async for event in _message(request, turn):
            yield event
        return
    if choice not in ("auto", "required"):
        yield CallStart(choice)  # type: ignore[arg-type]
        turn.prompt += f"functions.{choice}:\n"
        async for event in _arguments_step(request, turn, choice):  # type: ignore[arg-type]
            yield event
        yield Finish(turn.last.finish_reason or "stop")
        return
    names = [f"functions.{f['name']}:" for f in request.functions]
    first = f"root ::= {names_rule(names)}" + (' | "message:"' if choice == "auto" else "")
    head = await turn.complete(grammar=first, temperature=0.0)
    calls = 0
    if head.text == "message:":
        turn.prompt += "message:\n"
        async for event in _message(request, turn):
            yield event
        return
    while True:
        if head.finish_reason == "length" or not head.text.startswith("functions."):
            yield Finish("length" if head.finish_reason == "length" else "stop")
            return
        name = head.text[len("functions."):-1]
        yield CallStart(name)
        turn.prompt += f"functions.{name}:\n"
        async for event in _arguments_step(request, turn, name):
            yield event
        if turn.last.finish_reason == "length" or turn.exhausted:
            yield Finish("length")
            return
        turn.prompt += turn.last.text + "\n"
        calls += 1
        if not request.parallel or calls == MAX_CALLS:
            yield Finish("stop")
            return
        head = await turn.complete(grammar=f"root ::= ( {names_rule(names)} )?", temperature=0.0)
        if not head.text and head.finish_reason != "length":
            yield Finish("stop")
            return


async def _message(request: HandlerRequest, turn: Turn) -> AsyncIterator[TurnEvent]:
    async for text, logprobs in turn.run(stop=[*request.stops, END], grammar=request.grammar, logprobs=True):
        yield Content(text, logprobs)
    yield Finish(turn.last.finish_reason or "stop")


async def _arguments_step(request: HandlerRequest, turn: Turn, name: str) -> AsyncIterator[TurnEvent]:
    async for text, _ in turn.run(stop=[END], grammar=request.arguments_grammar(name)):
        yield Arguments(text)


async def chatml_function_calling(**kwargs: Any) -> Any:
    request = HandlerRequest.read(kwargs)
    offered = request.functions if request.choice != "none" else []
    turn = request.turn(render_prompt(request.messages, offered))
    events = _events(request, turn)
    if request.stream:
        return turn_chunks(turn, events, request.include_usage)
    return await turn_response(turn, events, request.legacy)
