"""llama-cpp-python's named multimodal handlers: each family's prompt format, with the media
where the family puts them, through the same projector and engine as MTMDChatHandler."""

from __future__ import annotations

import base64

import pytest

from allama import Llama, _native
from allama.chat import multimodal_presets as presets
from allama.chat.media_parts import mark_media
from allama.chat.multimodal import MTMDChatHandler
from allama.engine.media_prompt import media_prompt

from ..native.test_media import _png
from .test_multimodal import paths  # noqa: F401  (the module's model and projector)

pytestmark = pytest.mark.anyio

M = _native.default_media_marker()
PNG = _png(40, 30)
URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
VICUNA = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives "
          "helpful, detailed, and polite answers to the human's questions.")

QUESTION = [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": URL}}]}]

# The family formats, for one user turn with text then an image (the families that put
# media first move it ahead of the text).
EXPECTED = {
    presets.Llava15ChatHandler: f"{VICUNA}\nUSER: {M}What is this?\nASSISTANT: ",
    presets.Llava16ChatHandler: f"{VICUNA} USER: {M}\nWhat is this? ASSISTANT:",
    presets.ObsidianChatHandler: f"<|im_start|>system\n{VICUNA}\n###\n<|im_start|>user\n{M}What is this?###\n"
                                 "<|im_start|>assistant\n",
    presets.MoondreamChatHandler: f"{M}\n\nQuestion: What is this?\n\nAnswer:",
    presets.NanoLlavaChatHandler: "<|im_start|>system\nAnswer the question<|im_end|>"
                                  f"<|im_start|>user\n{M}\nWhat is this?<|im_end|><|im_start|>assistant\n",
    presets.Llama3VisionAlphaChatHandler: f"<|start_header_id|>user<|end_header_id|>\n\n{M}What is this?<|eot_id|>"
                                          "<|start_header_id|>assistant<|end_header_id|>\n\n",
    presets.MiniCPMv26ChatHandler: "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                   f"<|im_start|>user\n{M}What is this?<|im_end|>\n<|im_start|>assistant\n",
    presets.Qwen25VLChatHandler: "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                 f"<|im_start|>user\nWhat is this?{M}<|im_end|>\n<|im_start|>assistant\n",
}


@pytest.fixture(scope="module")
def llm(paths):  # noqa: F811
    model = Llama(str(paths[0]), n_ctx=512, n_parallel=4)
    yield model
    model.close()


async def rendered(handler: MTMDChatHandler, llm: Llama, messages: list[dict]) -> str:
    marked, media = await mark_media(messages, M, handler.source)
    return handler.formatter(llm)(messages=handler.with_default_system(marked)).prompt


@pytest.mark.parametrize("preset", list(EXPECTED), ids=lambda c: c.__name__)
async def test_each_preset_renders_its_familys_format(preset, llm, paths):  # noqa: F811
    assert await rendered(preset(str(paths[1])), llm, QUESTION) == EXPECTED[preset]


async def test_a_string_content_is_rendered_once(llm, paths):  # noqa: F811
    handler = presets.Llava15ChatHandler(str(paths[1]))
    text = await rendered(handler, llm, [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Hi"},
                                         {"role": "assistant", "content": "Hello"},
                                         {"role": "user", "content": "Again"}])
    assert text == "Be brief.\nUSER: Hi\nASSISTANT: Hello\nUSER: Again\nASSISTANT: "


async def test_media_keep_their_order_and_audio_parts_are_placed_too(llm, paths):  # noqa: F811
    handler = presets.Qwen25VLChatHandler(str(paths[1]))
    wav = base64.b64encode(b"RIFF0000WAVE").decode()
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": URL}},
                                             {"type": "text", "text": " and "},
                                             {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}}]}]
    marked, media = await mark_media(messages, M, handler.source)
    assert media == [PNG, b"RIFF0000WAVE"]
    assert f"user\n{M} and {M}<|im_end|>" in handler.formatter(llm)(messages=marked).prompt


async def test_a_subclass_template_written_for_llama_cpp_python_places_the_image(llm, paths):  # noqa: F811
    class Custom(presets.Llava15ChatHandler):
        DEFAULT_SYSTEM_MESSAGE = None
        CHAT_FORMAT = ("{% for message in messages %}{% for content in message.content %}"
                       "{% if content.type == 'image_url' %}[{{ content.image_url.url }}]{% endif %}"
                       "{% if content.type == 'text' %}{{ content.text }}{% endif %}{% endfor %}{% endfor %}")

    assert await rendered(Custom(str(paths[1])), llm, QUESTION) == f"What is this?[{M}]"


async def test_a_preset_chat_gives_the_reply_of_its_media_prompt(paths):  # noqa: F811
    handler = presets.MiniCPMv26ChatHandler(str(paths[1]), n_threads=2)
    async with Llama(str(paths[0]), n_ctx=512, n_parallel=2, chat_handler=handler) as llm:
        out = await llm.create_chat_completion(QUESTION, max_tokens=6, temperature=0.0)
        context = await handler.media_context(llm)
        tokens, spans = media_prompt(
            context.tokenize(EXPECTED[presets.MiniCPMv26ChatHandler], [context.bitmap_from_bytes(PNG)], True, True),
            context)
        expected = await llm.create_completion(tokens, media=spans, max_tokens=6, temperature=0.0, stop=["</s>"])
        assert out["choices"][0]["message"]["content"] == expected["choices"][0]["text"]
        assert out["usage"]["prompt_tokens"] == len(tokens)
        chunks = [c async for c in await llm.create_chat_completion(QUESTION, max_tokens=6, temperature=0.0,
                                                                     stream=True)]
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == \
            out["choices"][0]["message"]["content"]


def test_a_missing_projector_file_is_refused_at_construction(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        presets.Llava15ChatHandler(str(tmp_path / "missing.gguf"))


def test_the_presets_are_exported_from_allama_chat():
    import allama.chat

    for name in presets.__all__:
        assert getattr(allama.chat, name) is getattr(presets, name)
