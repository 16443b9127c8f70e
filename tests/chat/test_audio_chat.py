"""MTMDChatHandler with the tiny audio projector: OpenAI `input_audio` parts through the model's
template and mtmd, batched by the engine beside text; the same reply as the media prompt built
by hand, alone or beside other requests; clear errors for audio that cannot be used."""

from __future__ import annotations

import base64
import dataclasses

import anyio
import pytest

from allama import Llama, _native
from allama.chat.multimodal import MTMDChatHandler
from allama.engine.media_prompt import media_prompt
from allama.testing.model_builder import (AudioProjectorConfig, LlamaConfig, ProjectorConfig, build_audio_projector,
                                          build_llama, build_projector)

from ..tiny_models import TINY_LLAMA
from ..native.test_media import _png
from ..native.test_media_audio import _wav
from .test_multimodal import TEMPLATE

pytestmark = pytest.mark.anyio

WAV = _wav(16000)
N = 6


@pytest.fixture(scope="module")
def paths(models_dir):
    model = build_llama(models_dir / "audio-chat.gguf", dataclasses.replace(TINY_LLAMA, chat_template=TEMPLATE))[0]
    audio = build_audio_projector(models_dir / "audio-chat-projector.gguf", AudioProjectorConfig(), LlamaConfig())
    vision = build_projector(models_dir / "audio-chat-vision-projector.gguf", ProjectorConfig(), LlamaConfig())
    return model, audio, vision


@pytest.fixture(scope="module")
def llm(paths):
    # one request may use 1024 positions: a 30 s audio window alone is 750
    model = Llama(str(paths[0]), n_ctx=1024, n_parallel=3, n_threads=2, n_threads_batch=2,
                  chat_handler=MTMDChatHandler(str(paths[1]), n_threads=2))
    yield model
    model.close()


def ask(wav: bytes = WAV, fmt: str = "wav", question: str = "What did you hear? ") -> list[dict]:
    return [{"role": "user", "content": [
        {"type": "text", "text": question},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": fmt}},
    ]}]


async def reply(llm, messages, **kwargs) -> str:
    out = await llm.create_chat_completion(messages, max_tokens=N, temperature=0.0, **kwargs)
    return out["choices"][0]["message"]["content"]


async def test_an_input_audio_part_gives_the_reply_of_the_media_prompt(llm):
    out = await llm.create_chat_completion(ask(), max_tokens=N, temperature=0.0)
    # by hand: the template with the marker, split by the projector, through create_completion
    context = await llm.chat_handler.media_context(llm)
    assert context.supports_audio and not context.supports_vision
    text = f"<s><|user|>What did you hear? {_native.default_media_marker()}<|end|><|assistant|>"
    chunks = context.tokenize(text, [context.bitmap_from_bytes(WAV)], False, True)
    assert [chunks[i].type for i in range(len(chunks))] == ["text", "audio", "text"]
    tokens, spans = media_prompt(chunks, context)
    expected = await llm.create_completion(tokens, media=spans, max_tokens=N, temperature=0.0, stop=["</s>"])
    assert out["choices"][0]["message"]["content"] == expected["choices"][0]["text"]
    assert out["usage"]["prompt_tokens"] == len(tokens) > 750


async def test_audio_chat_beside_a_text_chat_replies_as_it_does_alone(llm):
    audio_question, text_question = ask(), [{"role": "user", "content": "Say something about the sea."}]
    alone = (await reply(llm, audio_question), await reply(llm, text_question))
    together: dict[str, str] = {}

    async def run(key: str, messages: list[dict]) -> None:
        together[key] = await reply(llm, messages)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "audio", audio_question)
        tg.start_soon(run, "text", text_question)
    assert (together["audio"], together["text"]) == alone


async def test_two_different_clips_at_once_each_reply_as_alone(llm):
    low, high = ask(_wav(16000, hz=300.0)), ask(_wav(16000, hz=2500.0))
    alone = [await reply(llm, low), await reply(llm, high)]
    assert alone[0] != alone[1]  # the clips steer the reply, so a mix-up would show
    results: list[str] = ["", ""]

    async def run(i: int, messages: list[dict]) -> None:
        results[i] = await reply(llm, messages)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0, low)
        tg.start_soon(run, 1, high)
    assert results == alone


async def test_streamed_audio_reply_matches_the_whole_one(llm):
    whole = await reply(llm, ask())
    stream = await llm.create_chat_completion(ask(), max_tokens=N, temperature=0.0, stream=True)
    assert "".join([c["choices"][0]["delta"].get("content", "") async for c in stream]) == whole


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("messages, message", [
    (ask(b"RIFF\x24\x00\x00\x00WAVEfmt garbage after a WAV header"), "could not be decoded"),
    (ask(b"\x00\x01 not audio at all \x02\x03"), "could not be decoded"),
    (ask(_wav(0)), "could not be decoded"),
    (ask(fmt="ogg"), "input_audio.format must be 'wav' or 'mp3'"),
    (ask(fmt=None), "input_audio.format must be 'wav' or 'mp3'"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "!!not base64!!",
                                                                           "format": "wav"}}]}],
     "not valid base64"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"format": "wav"}}]}],
     "input_audio.data is empty"),
    (ask(_wav(1)), "at least 2 samples"),  # mtmd itself would abort the process on it
], ids=["wav-header-then-garbage", "garbage", "empty-wav", "unsupported-format", "no-format", "bad-base64",
        "no-data", "one-sample"])
async def test_bad_audio_is_a_value_error(llm, messages, message):
    with pytest.raises(ValueError, match=message):
        await llm.create_chat_completion(messages, max_tokens=2)
    assert await reply(llm, [{"role": "user", "content": "Still there?"}])  # and the model still serves


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_audio_part_for_a_vision_only_projector_is_a_value_error(paths):
    async with Llama(str(paths[0]), n_ctx=256, n_threads=2,
                     chat_handler=MTMDChatHandler(str(paths[2]), n_threads=2)) as vision:
        with pytest.raises(ValueError, match="could not be decoded"):
            await vision.create_chat_completion(ask(), max_tokens=2)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_image_part_for_an_audio_only_projector_is_a_value_error(llm):
    url = "data:image/png;base64," + base64.b64encode(_png(16, 16)).decode()
    with pytest.raises(ValueError, match="does not take images"):
        await llm.create_chat_completion([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}], max_tokens=2)
