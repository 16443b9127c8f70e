"""MTMDChatHandler: OpenAI image parts through the model's own template and the projector,
batched by the engine; the same reply as building the media prompt by hand."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from allama import Llama, _native
from allama.chat.multimodal import MTMDChatHandler
from allama.engine.media_prompt import media_prompt
from allama.testing.model_builder import LlamaConfig, ProjectorConfig, build_llama, build_projector

from ..tiny_models import TINY_LLAMA
from ..native.test_media import _png

pytestmark = pytest.mark.anyio

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
PNG = _png(40, 30)


@pytest.fixture(scope="module")
def paths(models_dir):
    model = build_llama(models_dir / "vision-chat.gguf", dataclasses.replace(TINY_LLAMA, chat_template=TEMPLATE))[0]
    return model, build_projector(models_dir / "vision-projector.gguf", ProjectorConfig(), LlamaConfig())


@pytest.fixture(scope="module")
def llm(paths):
    model = Llama(str(paths[0]), n_ctx=512, n_parallel=4, chat_handler=MTMDChatHandler(str(paths[1]), n_threads=2))
    yield model
    model.close()


def ask(url: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": "What is this? "},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


async def test_an_image_part_gives_the_reply_of_the_media_prompt(llm):
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    out = await llm.create_chat_completion(ask(url), max_tokens=6, temperature=0.0)
    # by hand: the template with the marker, split by the projector, through create_completion
    context = await llm.chat_handler.media_context(llm)
    text = f"<s><|user|>What is this? {_native.default_media_marker()}<|end|><|assistant|>"
    tokens, spans = media_prompt(context.tokenize(text, [context.bitmap_from_bytes(PNG)], False, True), context)
    expected = await llm.create_completion(tokens, media=spans, max_tokens=6, temperature=0.0, stop=["</s>"])
    assert out["choices"][0]["message"]["content"] == expected["choices"][0]["text"]
    assert out["usage"]["prompt_tokens"] == len(tokens) and len(tokens) > 16


async def test_streams_and_files(llm, tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(PNG)
    whole = await llm.create_chat_completion(ask(str(path)), max_tokens=5, temperature=0.0)
    stream = await llm.create_chat_completion(ask(path.as_uri()), max_tokens=5, temperature=0.0, stream=True)
    text = "".join([c["choices"][0]["delta"].get("content", "") async for c in stream])
    assert text == whole["choices"][0]["message"]["content"]


async def test_text_only_messages_still_work(llm):
    out = await llm.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=3)
    assert out["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_bad_media_is_a_value_error(llm):
    bad = "data:image/png;base64," + base64.b64encode(b"not an image").decode()
    with pytest.raises(ValueError, match="could not be decoded"):
        await llm.create_chat_completion(ask(bad), max_tokens=2)
    with pytest.raises(ValueError, match="http\\(s\\) URLs is turned off"):
        await llm.create_chat_completion(ask("https://example.com/cat.png"), max_tokens=2)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_model_without_the_handler_refuses_image_parts(paths):
    async with Llama(str(paths[0]), n_ctx=256) as plain:
        with pytest.raises(ValueError, match="text content parts only"):
            await plain.create_chat_completion(ask("data:image/png;base64,AAAA"), max_tokens=2)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_projector_for_another_width_is_refused(models_dir, paths):
    wide = build_projector(models_dir / "wide-projector.gguf", ProjectorConfig(),
                           dataclasses.replace(LlamaConfig(), n_embd=96, n_head=4, n_head_kv=2))
    async with Llama(str(paths[0]), n_ctx=256, chat_handler=MTMDChatHandler(str(wide))) as llm:
        with pytest.raises(ValueError, match="cannot load the projector"):
            await llm.create_chat_completion(ask("data:image/png;base64," + base64.b64encode(PNG).decode()),
                                             max_tokens=2)


NO_BOS_TEMPLATE = TEMPLATE.removeprefix("{{ bos_token }}")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("template", [TEMPLATE, NO_BOS_TEMPLATE], ids=["writes-bos", "leaves-bos"])
async def test_media_prompts_start_with_one_bos_as_llama_mtmd_cli_tokenizes_them(models_dir, paths, template):
    # llama-mtmd-cli tokenizes the rendered prompt with add_special and parse_special: BOS is
    # added where the vocabulary wants it, whether or not the template wrote it; never twice
    model = build_llama(models_dir / f"vision-chat-{len(template)}.gguf",
                        dataclasses.replace(TINY_LLAMA, chat_template=template))[0]
    async with Llama(str(model), n_ctx=512, n_threads=1,
                     chat_handler=MTMDChatHandler(str(paths[1]), n_threads=1)) as llm:
        url = "data:image/png;base64," + base64.b64encode(PNG).decode()
        out = await llm.create_chat_completion(ask(url), max_tokens=6, temperature=0.0)
        context = await llm.chat_handler.media_context(llm)
        text = f"<|user|>What is this? {_native.default_media_marker()}<|end|><|assistant|>"
        chunks = context.tokenize(text, [context.bitmap_from_bytes(PNG)], True, True)  # as llama-mtmd-cli
        tokens, spans = media_prompt(chunks, context)
        assert tokens[0] == llm.token_bos() and tokens[1] != llm.token_bos()
        expected = await llm.create_completion(tokens, media=spans, max_tokens=6, temperature=0.0, stop=["</s>"])
        assert out["usage"]["prompt_tokens"] == len(tokens)
        assert out["choices"][0]["message"]["content"] == expected["choices"][0]["text"]
        text_only = await llm.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=1, logprobs=True)
        assert text_only["usage"]["prompt_tokens"] == len(llm.tokenize(b"<|user|>Hi<|end|><|assistant|>", True, True))
