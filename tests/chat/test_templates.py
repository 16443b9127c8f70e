"""The family templates under llama-cpp-python's constant names render their formats exactly,
through Jinja2ChatFormatter, and agree with allama's own named formats where there is one."""

from __future__ import annotations

import pytest

from allama.chat import (
    CHATML_BOS_TOKEN,
    CHATML_CHAT_TEMPLATE,
    CHATML_EOS_TOKEN,
    LLAMA3_INSTRUCT_CHAT_TEMPLATE,
    MISTRAL_INSTRUCT_BOS_TOKEN,
    MISTRAL_INSTRUCT_CHAT_TEMPLATE,
    MISTRAL_INSTRUCT_EOS_TOKEN,
    MIXTRAL_INSTRUCT_CHAT_TEMPLATE,
    Jinja2ChatFormatter,
    TemplateError,
    get_chat_format,
)

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Name a colour."},
]


def render(template: str, messages, bos: str = "<s>", eos: str = "</s>") -> str:
    return Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)(messages=messages).prompt


def test_chatml_template_renders_chatml_as_the_named_format_does():
    prompt = render(CHATML_CHAT_TEMPLATE, CONVERSATION, CHATML_BOS_TOKEN, CHATML_EOS_TOKEN)
    assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                      "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n"
                      "<|im_start|>assistant\n")
    assert prompt == get_chat_format("chatml")(messages=CONVERSATION).prompt


def test_mistral_instruct_template_puts_the_system_text_in_the_first_user_turn():
    prompt = render(MISTRAL_INSTRUCT_CHAT_TEMPLATE, CONVERSATION, MISTRAL_INSTRUCT_BOS_TOKEN, MISTRAL_INSTRUCT_EOS_TOKEN)
    assert prompt == "<s>[INST] Be brief.\n\nHi [/INST]Hello.</s>[INST] Name a colour. [/INST]"


def test_mixtral_template_alternates_user_and_assistant_and_refuses_other_orders():
    prompt = render(MIXTRAL_INSTRUCT_CHAT_TEMPLATE, CONVERSATION[1:])
    assert prompt == "<s>[INST] Hi [/INST]Hello.</s>[INST] Name a colour. [/INST]"
    with pytest.raises(TemplateError, match="alternate"):
        render(MIXTRAL_INSTRUCT_CHAT_TEMPLATE, CONVERSATION[1:2] * 2)


def test_llama3_template_renders_headers_and_eot_as_the_named_format_does():
    prompt = render(LLAMA3_INSTRUCT_CHAT_TEMPLATE, CONVERSATION, "<|begin_of_text|>", "<|eot_id|>")
    assert prompt == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                      "<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert prompt.removeprefix("<|begin_of_text|>") == get_chat_format("llama-3")(messages=CONVERSATION).prompt
