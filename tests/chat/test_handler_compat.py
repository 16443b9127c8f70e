"""llama-cpp-python's chat handler interface: every chat format as a handler, formatters
turned into handlers, blocking (plain function) handlers, the registry class, and the two
cases of llama-cpp-python's tests/test_llama_chat_format.py."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import jinja2
import pytest

import allama.sync
from allama import Llama
from allama.chat import (
    ChatFormatterHandler,
    ChatFormatterResponse,
    Gemma4ChatHandler,
    Jinja2ChatFormatter,
    LlamaChatCompletionHandlerNotFoundException,
    LlamaChatCompletionHandlerRegistry,
    MTMDChatHandler,
    chat_formatter_to_chat_completion_handler,
    get_chat_completion_handler,
    get_chat_format,
    guess_chat_format_from_gguf_metadata,
    hf_autotokenizer_to_chat_completion_handler,
    hf_autotokenizer_to_chat_formatter,
    hf_tokenizer_config_to_chat_completion_handler,
    hf_tokenizer_config_to_chat_formatter,
    list_chat_formats,
    register_chat_completion_handler,
)
from allama.chat.handler_call import BlockingLlama, runs_on_event_loop
from allama.chat.multimodal_presets import HANDLERS_BY_CHAT_FORMAT

pytestmark = pytest.mark.anyio

GOLDENS = Path(__file__).parent / "goldens"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]

MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
MISTRAL_TOKENIZER_CONFIG = {
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "tokenizer_class": "LlamaTokenizer",
    "chat_template": MISTRAL_TEMPLATE,
}


@pytest.fixture(scope="module")
def llm_options():
    return dict(n_ctx=512, n_parallel=2, n_threads=1, n_threads_batch=1)


def prompt_tokens(llm, prompt: str) -> int:
    return len(llm.tokenize(prompt.encode(), add_bos=True, special=True))


# --- llama-cpp-python's tests/test_llama_chat_format.py --------------------------------

def test_mistral_instruct_format_matches_the_mistral_template():
    messages = [{"role": "user", "content": "Instruction"}, {"role": "assistant", "content": "Model answer"},
                {"role": "user", "content": "Follow-up instruction"}]
    response = get_chat_format("mistral-instruct")(messages=messages)
    prompt = ("" if response.added_special else "<s>") + response.prompt
    assert prompt == jinja2.Template(MISTRAL_TEMPLATE).render(messages=messages, bos_token="<s>", eos_token="</s>")


def test_hf_tokenizer_config_formatter_renders_the_template():
    formatter = hf_tokenizer_config_to_chat_formatter(json.loads(json.dumps(MISTRAL_TOKENIZER_CONFIG)))
    response = formatter(messages=[{"role": "user", "content": "Hello, world!"}])
    assert response.prompt == "<s>[INST] Hello, world! [/INST]</s>"
    assert response.stop == ["</s>", "<s>"] and response.added_special


def test_hf_tokenizer_config_accepts_added_token_dicts_and_refuses_missing_templates():
    config = {**MISTRAL_TOKENIZER_CONFIG, "bos_token": {"content": "<s>", "special": True}}
    formatter = hf_tokenizer_config_to_chat_formatter(config, add_generation_prompt=False)
    assert formatter(messages=[{"role": "user", "content": "x"}]).prompt == "<s>[INST] x [/INST]"
    with pytest.raises(ValueError, match="chat_template"):
        hf_tokenizer_config_to_chat_formatter({"bos_token": "<s>", "eos_token": "</s>"})
    no_bos = hf_tokenizer_config_to_chat_formatter({**MISTRAL_TOKENIZER_CONFIG, "bos_token": None})
    response = no_bos(messages=[{"role": "user", "content": "x"}])
    assert response.prompt == "[INST] x [/INST]</s>" and response.stop == ["</s>"]


# --- every chat format is a handler ----------------------------------------------------

def test_every_chat_format_is_a_chat_completion_handler():
    for name in list_chat_formats():
        handler = get_chat_completion_handler(name)
        assert isinstance(handler, ChatFormatterHandler) and handler.formatter is get_chat_format(name)
        assert get_chat_completion_handler(name) is handler  # made once
    assert callable(get_chat_completion_handler("functionary-v2"))  # the handlers stay themselves
    with pytest.raises(LlamaChatCompletionHandlerNotFoundException, match="unknown chat completion handler"):
        get_chat_completion_handler("no-such-format")
    assert issubclass(LlamaChatCompletionHandlerNotFoundException, ValueError)


async def test_a_format_handler_renders_with_its_format(llm):
    expected_prompt = get_chat_format("chatml")(messages=MESSAGES).prompt
    handler = get_chat_completion_handler("chatml")
    out = await handler(llama=llm, messages=MESSAGES, max_tokens=3, temperature=0)
    assert out["object"] == "chat.completion"
    assert out["usage"]["prompt_tokens"] == prompt_tokens(llm, expected_prompt)
    reference = await llm.create_completion(expected_prompt, max_tokens=3, temperature=0, stop=["<|im_end|>"])
    assert out["choices"][0]["message"]["content"] == reference["choices"][0]["text"]


async def test_a_format_handler_as_the_llamas_chat_handler(llama_f32_path):
    expected_prompt = get_chat_format("zephyr")(messages=MESSAGES).prompt
    model = Llama(str(llama_f32_path), n_ctx=256, n_threads=1, chat_handler=get_chat_completion_handler("zephyr"))
    try:
        out = await model.create_chat_completion(MESSAGES, max_tokens=2, temperature=0)
        assert out["usage"]["prompt_tokens"] == prompt_tokens(model, expected_prompt)
        stream = await model.create_chat_completion(MESSAGES, max_tokens=2, temperature=0, stream=True)
        chunks = [c async for c in stream]
        assert chunks[0]["object"] == "chat.completion.chunk"
    finally:
        model.close()


async def test_jinja2_formatter_to_chat_handler(llm):
    formatter = Jinja2ChatFormatter("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}[assistant]",
                                    eos_token="</s>", bos_token="<s>")
    handler = formatter.to_chat_handler()
    assert isinstance(handler, ChatFormatterHandler) and handler.formatter is formatter
    out = await handler(llama=llm, messages=MESSAGES, max_tokens=2, temperature=0)
    assert out["usage"]["prompt_tokens"] == prompt_tokens(llm, "[system]Be brief.[user]Hi![assistant]")


async def test_chat_formatter_to_chat_completion_handler_takes_any_formatter(llm):
    def shouting(*, messages, **kwargs):
        return ChatFormatterResponse(prompt="".join(m["content"].upper() for m in messages) + ">")

    handler = chat_formatter_to_chat_completion_handler(shouting)
    out = await handler(llama=llm, messages=MESSAGES, max_tokens=2, temperature=0)
    assert out["usage"]["prompt_tokens"] == prompt_tokens(llm, "BE BRIEF.HI!>")


def test_format_handlers_work_with_the_blocking_twin(llama_f32_path):
    model = allama.sync.Llama(str(llama_f32_path), n_ctx=256, n_threads=1,
                              chat_handler=hf_tokenizer_config_to_chat_completion_handler(MISTRAL_TOKENIZER_CONFIG))
    try:
        out = model.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0)
        assert out["usage"]["prompt_tokens"] == prompt_tokens(model, "<s>[INST] Hi [/INST]</s>") - 1  # BOS in text
        chunks = list(model.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=2, stream=True))
        assert chunks[-1]["choices"][0]["finish_reason"] is not None
        # called directly with the blocking twin, a format handler answers at once
        direct = get_chat_completion_handler("chatml")(llama=model, messages=MESSAGES, max_tokens=1)
        assert direct["object"] == "chat.completion"
    finally:
        model.close()


# --- blocking (plain function) handlers --------------------------------------------------

def blocking_handler(calls: list):
    """A llama-cpp-python style handler: blocking calls on `llama`, a dict or an iterator back."""

    def handler(*, llama, messages, stream=False, max_tokens=None, **kwargs):
        calls.append(threading.current_thread())
        prompt = " ".join(m["content"] for m in messages) + "\nA:"
        if not stream:
            out = llama.create_completion(prompt, max_tokens=max_tokens, temperature=0)
            text = out["choices"][0]["text"]
            return {"id": "chat-" + out["id"], "object": "chat.completion", "created": out["created"],
                    "model": out["model"], "usage": out["usage"],
                    "choices": [{"index": 0, "finish_reason": out["choices"][0]["finish_reason"],
                                 "message": {"role": "assistant", "content": text}}]}

        def chunks():
            for chunk in llama.create_completion(prompt, max_tokens=max_tokens, temperature=0, stream=True):
                yield {"object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": {"content": chunk["choices"][0]["text"]},
                                    "finish_reason": chunk["choices"][0]["finish_reason"]}]}

        return chunks()

    return handler


async def test_a_blocking_handler_runs_off_the_event_loop(llm):
    calls: list = []
    handler = blocking_handler(calls)
    assert not runs_on_event_loop(handler)
    llm_handler_before = llm.chat_handler
    llm.chat_handler = handler
    try:
        out = await llm.create_chat_completion(MESSAGES, max_tokens=3)
        reference = await llm.create_completion("Be brief. Hi!\nA:", max_tokens=3, temperature=0)
        assert out["choices"][0]["message"]["content"] == reference["choices"][0]["text"]
        assert calls and calls[0] is not threading.current_thread()
        stream = await llm.create_chat_completion(MESSAGES, max_tokens=3, stream=True)
        text = "".join([c["choices"][0]["delta"]["content"] async for c in stream])
        assert text == reference["choices"][0]["text"]
    finally:
        llm.chat_handler = llm_handler_before


def test_a_blocking_handler_with_the_blocking_twin(llama_f32_path):
    calls: list = []
    model = allama.sync.Llama(str(llama_f32_path), n_ctx=256, n_threads=1, chat_handler=blocking_handler(calls))
    try:
        out = model.create_chat_completion(MESSAGES, max_tokens=3)
        reference = model.create_completion("Be brief. Hi!\nA:", max_tokens=3, temperature=0)
        assert out["choices"][0]["message"]["content"] == reference["choices"][0]["text"]
        chunks = list(model.create_chat_completion(MESSAGES, max_tokens=3, stream=True))
        assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == reference["choices"][0]["text"]
    finally:
        model.close()


async def test_a_handler_that_needs_no_model_may_return_a_plain_dict(llm):
    def canned(*, llama, messages, **kwargs):
        assert isinstance(llama, BlockingLlama) and llama.n_ctx() == llm.n_ctx()
        return {"object": "chat.completion", "choices": [{"message": {"content": "canned"}}]}

    before = llm.chat_handler
    llm.chat_handler = canned
    try:
        out = await llm.create_chat_completion(MESSAGES)
    finally:
        llm.chat_handler = before
    assert out["choices"][0]["message"]["content"] == "canned"


async def test_a_sync_wrapper_may_delegate_to_a_format_handler(llm):
    chatml = get_chat_completion_handler("chatml")

    def wrapper(*, llama, **request):
        return chatml(llama=llama, **request)

    before = llm.chat_handler
    llm.chat_handler = wrapper
    try:
        out = await llm.create_chat_completion(MESSAGES, max_tokens=2, temperature=0)
    finally:
        llm.chat_handler = before
    assert out["usage"]["prompt_tokens"] == prompt_tokens(llm, get_chat_format("chatml")(messages=MESSAGES).prompt)


# --- the registry, GGUF metadata, Hugging Face tokenizers, Gemma 4 ------------------------

def test_registry_class_registers_and_unregisters():
    registry = LlamaChatCompletionHandlerRegistry()

    async def handler(**kwargs):
        return {}

    registry.register_chat_completion_handler("compat-test-handler", handler)
    try:
        assert get_chat_completion_handler("compat-test-handler") is handler
        assert LlamaChatCompletionHandlerRegistry().get_chat_completion_handler_by_name("compat-test-handler") is handler
        with pytest.raises(ValueError, match="overwrite=True"):
            registry.register_chat_completion_handler("compat-test-handler", handler)
        registry.register_chat_completion_handler("compat-test-handler", handler, overwrite=True)
    finally:
        registry.unregister_chat_handler("compat-test-handler")
    with pytest.raises(ValueError):
        registry.unregister_chat_handler("compat-test-handler")
    register_chat_completion_handler("compat-test-decorated")(handler)
    registry.unregister_chat_handler("compat-test-decorated")


def test_guess_chat_format_from_gguf_metadata():
    templates = json.loads((GOLDENS / "known_templates.json").read_text())
    assert guess_chat_format_from_gguf_metadata({"tokenizer.chat_template": templates["chatml"]["template"]}) == "chatml"
    assert guess_chat_format_from_gguf_metadata({"tokenizer.chat_template": templates["llama-3"]["template"]}) == "llama-3"
    assert guess_chat_format_from_gguf_metadata({"tokenizer.chat_template": "{{ messages }}"}) is None
    assert guess_chat_format_from_gguf_metadata({}) is None


def test_hf_autotokenizer_formatter_and_handler(tmp_path):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from ..hf_tokenizers import build_byte_level_bpe

    source = build_byte_level_bpe(tmp_path / "raw")
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.chat_template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
                               "{% if add_generation_prompt %}<assistant>{% endif %}")
    tokenizer.save_pretrained(tmp_path / "templated")
    formatter = hf_autotokenizer_to_chat_formatter(tmp_path / "templated")
    response = formatter(messages=MESSAGES)
    assert response.prompt == "<system>Be brief.<user>Hi!<assistant>"
    assert response.stop == "</s>" and response.added_special
    assert formatter(messages=MESSAGES, add_generation_prompt=False).prompt == "<system>Be brief.<user>Hi!"
    assert isinstance(hf_autotokenizer_to_chat_completion_handler(tmp_path / "templated"), ChatFormatterHandler)


def test_gemma4_handler_uses_the_models_template():
    assert issubclass(Gemma4ChatHandler, MTMDChatHandler)
    assert Gemma4ChatHandler.CHAT_FORMAT is None  # the GGUF's own template
    assert HANDLERS_BY_CHAT_FORMAT["gemma4"] is Gemma4ChatHandler
