"""The function-calling handlers send the prompts llama-cpp-python 0.3.36 sends, step by step
(goldens from tests/chat/goldens/generate_handler_goldens.py), and the documented deviations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from allama.chat import get_chat_completion_handler
from allama.chat.handlers import chatml_function_calling, functionary
from allama.stream import AsyncStream

pytestmark = pytest.mark.anyio

GOLDENS = json.loads((Path(__file__).parents[1] / "goldens" / "chat_handlers.json").read_text())

# What the model writes at each step in allama's handlers. They differ from the goldens' replies
# where allama ends a step with the grammar instead of a stop string.
REPLIES = {
    ("chatml-function-calling", "none"): ["Sunny."],
    ("chatml-function-calling", "named"): ['{"city": "Paris"}'],
    ("chatml-function-calling", "auto-message"): ["message:", "Sunny."],
    ("chatml-function-calling", "auto-call"): ["functions.get_weather:", '{"city": "Paris"}', ""],
    ("functionary", "auto-call"): [" to=functions.get_weather:", '{"city": "Paris"}'],
    ("functionary", "named"): ['{"travellers": []}'],
    ("functionary", "no-functions"): ["It is sunny."],
}


class RecordingModel:
    """Stands in for allama.Llama: records each step's prompt, answers with scripted replies."""

    model_path = "recording"

    def n_ctx(self) -> int:
        return 1 << 20

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []
        self._texts: list[str] = []

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        self._texts.append(text.decode())
        return [len(self._texts) - 1]

    async def create_completion(self, tokens: list[int], **kwargs: Any) -> AsyncStream[dict[str, Any]]:
        self.prompts.append(self._texts[tokens[0]])
        reply = self.replies.pop(0)

        async def chunks():
            base = {"id": "cmpl-0", "object": "text_completion", "created": 0, "model": "m"}
            yield {**base, "choices": [{"text": reply, "index": 0, "logprobs": None, "finish_reason": "stop"}]}
            yield {**base, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

        return AsyncStream(chunks())


@pytest.mark.parametrize("golden", GOLDENS, ids=[f"{g['handler']}-{g['label']}" for g in GOLDENS])
async def test_each_step_sends_llama_cpp_pythons_prompt(golden):
    model = RecordingModel(REPLIES[(golden["handler"], golden["label"])])
    handler = get_chat_completion_handler(golden["handler"])
    await handler(llama=model, **json.loads(json.dumps(golden["request"])))
    assert model.prompts == golden["prompts"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_handlers_are_registered_under_llama_cpp_pythons_names():
    for name in ("chatml-function-calling", "functionary", "functionary-v1", "functionary-v2"):
        assert callable(get_chat_completion_handler(name))


def test_chatml_renders_tool_results_and_calls_one_per_line():
    # Deviation: llama-cpp-python drops tool results (an empty tool turn) and runs calls together.
    calls = [{"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
             {"id": "b", "type": "function", "function": {"name": "g", "arguments": {"y": 2}}}]
    prompt = chatml_function_calling.render_prompt(
        [{"role": "user", "content": "go"}, {"role": "assistant", "content": None, "tool_calls": calls},
         {"role": "tool", "tool_call_id": "a", "content": "42 & <ok>"}], [])
    assert prompt == ('<|im_start|>user\ngo<|im_end|>\n<|im_start|>assistant\nfunctions.f:\n{"x": 1}\n'
                      'functions.g:\n{"y": 2}<|im_end|>\n<|im_start|>tool\n42 & <ok><|im_end|>\n'
                      '<|im_start|>assistant\n')


def test_functionary_names_the_function_of_a_tool_result():
    # Deviation: llama-cpp-python writes the call id where the model expects the function's name.
    messages = [{"role": "user", "content": "go"},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"}]
    prompt = functionary.render_prompt(messages, [])
    assert prompt.endswith("user:\n</s>go</s>\nassistant to=functions.f:\n{}</s>\n"
                           "function name=functions.f:\n42\nassistant")
