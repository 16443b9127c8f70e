"""The `functionary-v1` and `functionary-v2` handlers: functionary models that ship their
own chat template (in the GGUF), which renders the prompt.

v2 writes each part of a turn as `<|from|>assistant\\n<|recipient|>NAME\\n<|content|>...`,
NAME being `all` for a message or a function for a call, and ends with `<|stop|>`; a part
ending in `<|from|>` is followed by another. v1 writes a message ending in
`<|END_OF_ASSISTANT|>`, or `<|START_OF_FUNCTION_CALL|>NAME:\\n{arguments}<|END_OF_FUNCTION_CALL|>`.
Which recipient comes next is chosen greedily under a grammar of `all` and the function
names; arguments are constrained to the function's schema. The handler's name picks the
protocol (llama-cpp-python reads it from a Hugging Face tokenizer, which allama does not load).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from allama.chat.handlers.functionary import SYSTEM_MESSAGE
from allama.chat.handlers.handler_request import HandlerRequest, names_rule
from allama.chat.handlers.turn import (MAX_CALLS, Arguments, CallStart, Content, Finish, Turn, TurnEvent, turn_chunks,
                                      turn_response)
from allama.chat.handlers.typescript_signatures import functions_namespace

# v2's markers
FROM, RECIPIENT, CONTENT, STOP = "<|from|>", "<|recipient|>", "<|content|>", "<|stop|>"
# v1's markers
END_ASSISTANT = "<|END_OF_ASSISTANT|>"
START_CALL, END_CALL = "<|START_OF_FUNCTION_CALL|>", "<|END_OF_FUNCTION_CALL|>"


def render_prompt(llama: Any, request: HandlerRequest, version: int) -> str:
    """The model's template rendering the function signatures, functionary's system prompt
    and the conversation, then the opening of the assistant's turn."""
    template = llama.chat_template()
    if not template:
        raise ValueError(f"functionary-v{version} renders prompts with the model's chat template, "
                         "and this model has none (tokenizer.chat_template)")
    head = []
    if request.functions:
        shown = request.functions if request.choice != "none" else []
        head.append({"role": "system", "content": functions_namespace(shown, indent=False)})
    head.append({"role": "system", "content": SYSTEM_MESSAGE})
    formatter = llama.template_formatter(template, add_generation_prompt=False)
    prompt = formatter(messages=head + request.messages).prompt
    return prompt + ("assistant:\n" if version == 1 else f"{FROM}assistant\n{RECIPIENT}")


async def _arguments(request: HandlerRequest, turn: Turn, name: str, stop: list[str]) -> AsyncIterator[TurnEvent]:
    yield CallStart(name)
    async for text, _ in turn.run(stop=stop, grammar=request.arguments_grammar(name)):
        yield Arguments(text)


async def _content(request: HandlerRequest, turn: Turn, stop: list[str]) -> AsyncIterator[TurnEvent]:
    async for text, logprobs in turn.run(stop=[*request.stops, *stop], grammar=request.grammar, logprobs=True):
        yield Content(text, logprobs)


def _ended(turn: Turn) -> str | None:
    """The finish reason if the turn cannot go on."""
    return "length" if turn.last.finish_reason == "length" or turn.exhausted else None


async def _v2_events(request: HandlerRequest, turn: Turn) -> AsyncIterator[TurnEvent]:
    choice = request.choice
    routed = choice in ("auto", "required")
    names = [f["name"] for f in request.functions]
    calls = 0
    while True:
        if routed:
            recipients = (["all"] if choice == "auto" else []) + names
            head = await turn.complete(grammar=f"root ::= {names_rule(recipients)}", temperature=0.0)
            if _ended(turn):
                yield Finish("length")
                return
            recipient = head.text
        else:
            recipient = "all" if choice == "none" else choice  # type: ignore[assignment]
        turn.prompt += f"{recipient}\n{CONTENT}"
        if recipient == "all":
            async for event in _content(request, turn, [STOP, "\n" + FROM, FROM]):
                yield event
            kept = turn.last.text.strip()
            more = turn.last.stop in ("\n" + FROM, FROM)
        else:
            async for event in _arguments(request, turn, recipient, [STOP, FROM]):
                yield event
            kept = turn.last.text
            more = False
        if turn.last.finish_reason == "length":
            yield Finish("length")
            return
        calls += recipient != "all"
        if recipient != "all" and routed and request.parallel and not turn.exhausted and calls < MAX_CALLS:
            turn.prompt += kept
            kept = ""
            more = (await turn.complete(stop=[STOP, FROM], limit=16)).stop == FROM  # does the model go on?
        if not (more and routed):
            yield Finish("stop")
            return
        if turn.exhausted:
            yield Finish("length")
            return
        turn.prompt += f"{kept}\n{FROM}assistant\n{RECIPIENT}"


async def _v1_events(request: HandlerRequest, turn: Turn) -> AsyncIterator[TurnEvent]:
    choice = request.choice
    names = [f["name"] for f in request.functions]
    if choice == "auto":
        async for event in _content(request, turn, [END_ASSISTANT, START_CALL]):
            yield event
        if _ended(turn) or turn.last.stop != START_CALL:
            yield Finish(_ended(turn) or "stop")
            return
        turn.prompt += turn.last.text
        choice = "required"
    if choice == "none":
        async for event in _content(request, turn, [END_ASSISTANT]):
            yield event
        yield Finish(_ended(turn) or "stop")
        return
    turn.prompt += START_CALL
    if choice == "required":
        head = await turn.complete(grammar=f'root ::= ( {names_rule(names)} ) ":"', temperature=0.0)
        if _ended(turn):
            yield Finish("length")
            return
        choice = head.text[:-1]
    turn.prompt += f"{choice}:\n"
    async for event in _arguments(request, turn, choice, [END_CALL]):  # type: ignore[arg-type]
        yield event
    yield Finish(_ended(turn) or "stop")


async def _handle(version: int, kwargs: dict[str, Any]) -> Any:
    request = HandlerRequest.read(kwargs)
    llama = request.llama
    turn = request.turn(render_prompt(llama, request, version))
    turn.add_bos = False  # the template writes the BOS text itself where the model wants one
    events = (_v1_events if version == 1 else _v2_events)(request, turn)
    if request.stream:
        return turn_chunks(turn, events, request.include_usage)
    return await turn_response(turn, events, request.legacy)


async def functionary_v1(**kwargs: Any) -> Any:
    return await _handle(1, kwargs)


async def functionary_v2(**kwargs: Any) -> Any:
    return await _handle(2, kwargs)
