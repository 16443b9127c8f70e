"""Jinja2ChatFormatter: real templates render in the sandbox exactly as outside it,
and template-injection payloads execute nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from allama.chat import Jinja2ChatFormatter, TemplateError
from allama.chat.formatter import family_variables, make_environment
from allama.testing.model_builder import vocab_dir

TEMPLATES = sorted((vocab_dir() / "templates").glob("*.jinja"))

# Parameters carry descriptions, as real tool definitions do (Command R's template prints them).
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                   "required": ["city"]}}}]


def conversation(arguments_as_object: bool) -> list[dict]:
    arguments = {"city": "Paris"} if arguments_as_object else json.dumps({"city": "Paris"})
    return [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "It is 21C."},
        {"role": "user", "content": "Thanks!"},
    ]


def render(source: str, sandboxed: bool, messages: list[dict], extra: dict) -> tuple[str, str]:
    try:
        out = make_environment(sandboxed).from_string(source).render(
            messages=copy.deepcopy(messages), tools=copy.deepcopy(TOOLS), add_generation_prompt=True,
            bos_token="<s>", eos_token="</s>", **extra)
        return "ok", out
    except Exception as exc:  # noqa: BLE001 - compared between the two environments
        return type(exc).__name__, str(exc)


# Templates that reject the conversation with their own raise_exception, the same way
# inside and outside the sandbox.
REJECTING = {
    "google-gemma-2-2b-it": "System role not supported",
}


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_real_template_renders_in_the_sandbox_as_outside(path: Path):
    source = path.read_text()
    results = []
    extra = family_variables(source, TOOLS)  # once: it holds the time, which must match in both renders
    for as_object in (False, True):  # OpenAI sends arguments as a string; many templates want an object
        sandboxed = render(source, True, conversation(as_object), extra)
        plain = render(source, False, conversation(as_object), extra)
        assert sandboxed == plain
        results.append(sandboxed)
    if path.stem in REJECTING:
        assert all(kind == "TemplateError" and REJECTING[path.stem] in out for kind, out in results), results
    else:
        assert any(kind == "ok" for kind, _ in results), results
        text = next(out for kind, out in results if kind == "ok")
        assert "Weather in Paris?" in text and "Thanks!" in text


def test_there_are_real_templates_to_check():
    assert len(TEMPLATES) >= 50


PAYLOADS = [
    # CVE-2024-34359 and relatives: reach os/subprocess through Python internals.
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('touch /tmp/allama-pwned').read() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch /tmp/allama-pwned').read() }}",
    "{{ messages.__class__.__init__.__globals__ }}",
    "{{ raise_exception.__globals__['os'] }}",
    "{{ ''.format.__self__ }}{{ ().__class__.__subclasses__() }}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_payload_raises_and_executes_nothing(payload, tmp_path):
    marker = Path("/tmp/allama-pwned")
    marker.unlink(missing_ok=True)
    formatter = Jinja2ChatFormatter(payload, eos_token="</s>", bos_token="<s>")
    with pytest.raises(TemplateError):
        formatter(messages=[{"role": "user", "content": "hi"}])
    assert not marker.exists()


def test_helpers_real_templates_use():
    template = ("{{ bos_token }}{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}"
                "{{ m.content | tojson(indent=1) }}{% endfor %}{{ strftime_now('%Y') | length }}"
                "{% if add_generation_prompt %}<gen>{% endif %}")
    out = Jinja2ChatFormatter(template, eos_token="</s>", bos_token="<s>")(
        messages=[{"role": "user", "content": "é"}, {"role": "user", "content": "b"}, {"role": "user", "content": "c"}])
    assert out.prompt == '<s>"é""b"4<gen>'
    assert out.stop == ["</s>"] and out.added_special


def test_raise_exception_becomes_a_template_error():
    formatter = Jinja2ChatFormatter("{{ raise_exception('roles must alternate') }}", "</s>", "<s>")
    with pytest.raises(TemplateError, match="roles must alternate"):
        formatter(messages=[])


def test_templates_get_copies_of_the_messages():
    messages = [{"role": "user", "content": "hi", "extra": []}]
    Jinja2ChatFormatter("{% for m in messages %}{% set _ = m.extra.append(1) %}{% endfor %}", "", "")(
        messages=messages)
    assert messages == [{"role": "user", "content": "hi", "extra": []}]


def test_generation_tags_render_their_body():
    out = Jinja2ChatFormatter("{% generation %}body{% endgeneration %}", "", "")(messages=[])
    assert out.prompt == "body"


def test_bad_template_syntax_is_a_template_error():
    with pytest.raises(TemplateError, match="does not parse"):
        Jinja2ChatFormatter("{% for %}", "", "")


def test_firefunction_gets_its_tools_as_json_and_the_date():
    source = (vocab_dir() / "templates" / "fireworks-ai-llama-3-firefunction-v2.jinja").read_text()
    out = Jinja2ChatFormatter(source, eos_token="<|eot_id|>", bos_token="<|begin_of_text|>")(
        messages=conversation(False), tools=TOOLS)
    assert json.dumps(TOOLS, indent=2) in out.prompt
    assert "Today is " in out.prompt and " GMT." in out.prompt
