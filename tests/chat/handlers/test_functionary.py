"""functionary, functionary-v1 and functionary-v2 on the tiny model (choices scripted)."""

from __future__ import annotations

import dataclasses
import json

import jsonschema
import pytest

from allama import Llama
from allama.testing.model_builder import build_llama

from ...scripted import scripted_steps
from ...tiny_models import TINY_LLAMA
from .streamed import streamed_message

pytestmark = pytest.mark.anyio

WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]}
ZONE = {"type": "object", "properties": {"zone": {"enum": ["CET", "UTC"]}}, "required": ["zone"]}
FUNCTIONS = [{"name": "get_weather", "description": "Weather", "parameters": WEATHER},
             {"name": "get_time", "description": "Time", "parameters": ZONE}]
TOOLS = [{"type": "function", "function": f} for f in FUNCTIONS]
ASK = [{"role": "user", "content": "Weather in Paris?"}]

# A functionary-v2-style template (written for these tests in that prompt format).
V2_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role in ['system', 'user'] %}<|from|>{{ m.role }}\n<|recipient|>all\n<|content|>{{ m.content }}\n"
    "{% elif m.role == 'tool' %}<|from|>{{ m.name }}\n<|recipient|>all\n<|content|>{{ m.content }}\n"
    "{% else %}<|from|>assistant\n<|recipient|>all\n<|content|>{{ m.content }}<|stop|>\n{% endif %}"
    "{% endfor %}")
# A functionary-v1-style template.
V1_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'system' %}system:\n{{ m.content }}<|END_OF_SYSTEM|>\n"
    "{% elif m.role == 'user' %}user:\n{{ m.content }}<|END_OF_USER|>\n"
    "{% else %}assistant:\n{{ m.content }}<|END_OF_ASSISTANT|>\n{% endif %}"
    "{% endfor %}")


def _open(path, chat_format):
    return Llama(str(path), n_ctx=2048, chat_format=chat_format)


@pytest.fixture(scope="module")
def functionary(llama_f32_path):
    model = _open(llama_f32_path, "functionary")
    yield model
    model.close()


def _with_template(models_dir, template, chat_format):
    path = build_llama(models_dir / f"{chat_format}.gguf", dataclasses.replace(TINY_LLAMA, chat_template=template))
    model = _open(path[0], chat_format)
    yield model
    model.close()


@pytest.fixture(scope="module")
def v2(models_dir):
    yield from _with_template(models_dir, V2_TEMPLATE, "functionary-v2")


@pytest.fixture(scope="module")
def v1(models_dir):
    yield from _with_template(models_dir, V1_TEMPLATE, "functionary-v1")


def _calls(out):
    return [(c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in out["choices"][0]["message"].get("tool_calls") or []]


async def test_functionary_auto_call(functionary):
    script = scripted_steps(functionary, [" to=functions.get_time:", '{"zone": "UTC"}'])
    out = await functionary.create_chat_completion(ASK, functions=FUNCTIONS, logits_processor=script)
    assert _calls(out) == [("get_time", {"zone": "UTC"})]
    assert out["choices"][0]["message"]["function_call"]["name"] == "get_time"
    assert out["choices"][0]["finish_reason"] == "tool_calls"


async def test_functionary_auto_message(functionary):
    script = scripted_steps(functionary, [":", "It is sunny.</s>"])
    out = await functionary.create_chat_completion(ASK, tools=TOOLS, logits_processor=script)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "It is sunny."}


async def test_functionary_required_matches_the_schema(functionary):
    for seed in range(3):
        out = await functionary.create_chat_completion(ASK, tools=TOOLS, tool_choice="required", seed=seed,
                                                       temperature=1.0, max_tokens=200)
        (name, arguments), = _calls(out)
        jsonschema.validate(arguments, WEATHER if name == "get_weather" else ZONE)


async def test_v2_message_then_two_calls(v2):
    script = scripted_steps(v2, ["all", "Let me check.\n<|from|>", "get_weather", '{"city": "Paris"}',
                                 "\n<|from|>", "get_time", '{"zone": "CET"}', "<|stop|>"])
    out = await v2.create_chat_completion(ASK, tools=TOOLS, logits_processor=script)
    assert out["choices"][0]["message"]["content"] == "Let me check."
    assert _calls(out) == [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})]
    assert out["choices"][0]["finish_reason"] == "tool_calls"


async def test_v2_message_ends_at_stop(v2):
    script = scripted_steps(v2, ["all", "Hello there.<|stop|>"])
    stream = await v2.create_chat_completion(ASK, tools=TOOLS, stream=True, logits_processor=script)
    assert await streamed_message(stream) == ("Hello there.", "stop")


async def test_v2_prompt_is_the_models_template_with_the_signatures(v2):
    from allama.chat.handlers.functionary import SYSTEM_MESSAGE
    from allama.chat.handlers.typescript_signatures import functions_namespace

    out = await v2.create_chat_completion(ASK, tools=TOOLS, tool_choice={"type": "function",
                                                                          "function": {"name": "get_time"}})
    assert _calls(out)[0][0] == "get_time"
    rendered = v2.template_formatter(V2_TEMPLATE, add_generation_prompt=False)(messages=[
        {"role": "system", "content": functions_namespace(FUNCTIONS, indent=False)},
        {"role": "system", "content": SYSTEM_MESSAGE}, *ASK]).prompt
    prompt = rendered + "<|from|>assistant\n<|recipient|>get_time\n<|content|>"  # a named recipient is prompt
    assert out["usage"]["prompt_tokens"] == len(v2.tokenize(prompt.encode(), add_bos=False, special=True))


async def test_v1_message_then_call(v1):
    script = scripted_steps(v1, ["Sure.<|START_OF_FUNCTION_CALL|>", "get_weather:", '{"city": "Rome"}'])
    out = await v1.create_chat_completion(ASK, tools=TOOLS, logits_processor=script)
    assert out["choices"][0]["message"]["content"] == "Sure."
    assert _calls(out) == [("get_weather", {"city": "Rome"})]


async def test_v1_message_ends_at_end_of_assistant(v1):
    script = scripted_steps(v1, ["Just a reply.<|END_OF_ASSISTANT|>"])
    out = await v1.create_chat_completion(ASK, tools=TOOLS, logits_processor=script)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "Just a reply."}
    assert out["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_v2_needs_the_models_template(llama_f32_path):
    model = _open(llama_f32_path, "functionary-v2")
    try:
        with pytest.raises(ValueError, match="chat template"):
            await model.create_chat_completion(ASK, tools=TOOLS)
    finally:
        model.close()
