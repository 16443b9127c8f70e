"""Generates chat_handlers.json: the prompts llama-cpp-python 0.3.36's chatml-function-calling
and functionary handlers send to the model, for fixed requests. The goldens are
llama-cpp-python's output, not our opinion; tests/chat/handlers/test_handler_prompts.py
checks allama's prompts against them.

The handlers run against a stand-in model that records each prompt and answers with the
scripted replies below (llama-cpp-python's stop strings already cut), so no weights are needed.

Run once (needs llama-cpp-python 0.3.36, e.g. from benchmarks/build_peers.sh):
    LLAMA_CPP_LIB_PATH=build/peers/bin python tests/chat/goldens/generate_handler_goldens.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llama_cpp import llama_chat_format as lcf

WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                           "unit": {"enum": ["c", "f"]}},
                          "required": ["city"]}}
BOOK = {"name": "book_trip", "description": "Books a trip",
        "parameters": {"type": "object",
                       "$defs": {"Seat": {"enum": ["aisle", "window"]},
                                 "Person": {"type": "object", "properties": {"name": {"type": "string"},
                                                                             "age": {"type": "integer"}}}},
                       "properties": {"travellers": {"type": "array", "items": {"$ref": "#/$defs/Person"}},
                                      "seat": {"$ref": "#/$defs/Seat"},
                                      "dates": {"type": "object", "properties": {"out": {"type": "string"},
                                                                                 "back": {"type": "string"}}}},
                       "required": ["travellers"]}}
TOOLS = [{"type": "function", "function": WEATHER}, {"type": "function", "function": BOOK}]
ASK = [{"role": "system", "content": "You are a travel agent."}, {"role": "user", "content": "Weather in Paris?"}]
HISTORY = [{"role": "system", "content": "You are a travel agent."}, {"role": "user", "content": "Hi"},
           {"role": "assistant", "content": "Hello, how can I help"}, {"role": "user", "content": "Weather in Paris?"}]
CALLED = [{"role": "user", "content": "Weather in Paris?"},
          {"role": "assistant", "content": None,
           "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
          {"role": "function", "name": "get_weather", "content": "sunny"}]

# (handler, label, request, replies)
CASES: list[tuple[str, str, dict[str, Any], list[str]]] = [
    ("chatml-function-calling", "none", {"messages": ASK, "tools": TOOLS, "tool_choice": "none"}, ["Sunny."]),
    ("chatml-function-calling", "named",
     {"messages": ASK, "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
     ['{"city": "Paris"}']),
    ("chatml-function-calling", "auto-message", {"messages": ASK, "tools": TOOLS, "tool_choice": "auto"},
     ["message", "Sunny."]),
    ("chatml-function-calling", "auto-call", {"messages": HISTORY, "tools": TOOLS, "tool_choice": "auto"},
     ["functions.get_weather", '{"city": "Paris"}', "<|im_end|>"]),
    ("functionary", "auto-call", {"messages": ASK, "functions": [WEATHER, BOOK], "function_call": "auto"},
     [" to=functions.get_weather:", '{"city": "Paris"}']),
    ("functionary", "named", {"messages": HISTORY, "functions": [WEATHER, BOOK],
                              "function_call": {"name": "book_trip"}}, ['{"travellers": []}']),
    ("functionary", "no-functions", {"messages": CALLED}, ["It is sunny."]),
]


class RecordingModel:
    """Stands in for llama_cpp.Llama: records prompts, answers with scripted replies."""

    verbose = False

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def create_completion(self, prompt: str, **kwargs: Any) -> dict[str, Any]:
        self.prompts.append(prompt)
        return {"id": "cmpl-0", "object": "text_completion", "created": 0, "model": "m",
                "choices": [{"text": self.replies.pop(0), "index": 0, "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def main() -> None:
    goldens = []
    for handler, label, request, replies in CASES:
        model = RecordingModel(replies)
        lcf.get_chat_completion_handler(handler)(llama=model, **json.loads(json.dumps(request)))
        goldens.append({"handler": handler, "label": label, "request": request, "prompts": model.prompts})
    out = Path(__file__).with_name("chat_handlers.json")
    out.write_text(json.dumps(goldens, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out} ({len(goldens)} cases)")


if __name__ == "__main__":
    main()
