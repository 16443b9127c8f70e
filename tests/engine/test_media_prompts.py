"""Prompts with images through the engine: the same greedy text as evaluating them alone
with mtmd, beside text requests and other images, and prefix reuse that never mixes up
two images."""

from __future__ import annotations

import itertools

import anyio
import numpy as np
import pytest

from allama import Llama, _native
from allama.engine.media_prompt import media_prompt

from ..conftest import make_context
from ..greedy import greedy_tokens

pytestmark = pytest.mark.anyio

PROMPT = "USER: <__media__>\nWhat is in the picture? ASSISTANT:"
FRESH = itertools.count()
N = 8


@pytest.fixture(scope="module")
def llm(llama_f32_path):
    model = Llama(str(llama_f32_path), n_ctx=512, n_parallel=4, n_batch=64, n_threads=2, n_threads_batch=2)
    yield model
    model.close()


@pytest.fixture(scope="module")
def media(llm, models_dir):
    from allama.testing.model_builder import LlamaConfig, ProjectorConfig, build_projector

    path = build_projector(models_dir / "engine-projector.gguf", ProjectorConfig(), LlamaConfig())
    return _native.MediaContext(llm._model, str(path), n_threads=2)


def image(seed: int) -> _native.Bitmap:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    bitmap = _native.Bitmap.from_rgb(pixels)
    bitmap.id = f"test-image-{seed}"
    return bitmap


async def generate(llm, media, seed: int) -> tuple[str, dict]:
    tokens, spans = media_prompt(media.tokenize(PROMPT, [image(seed)]), media)
    out = await llm.create_completion(tokens, media=spans, max_tokens=N, temperature=0.0)
    return out["choices"][0]["text"], out["usage"]


def oracle(llm, media, seed: int) -> str:
    """The same prompt evaluated by mtmd on a fresh context, then greedy decoding: the text."""
    ctx = make_context(llm._model, n_ctx=256, n_batch=64, n_seq_max=1)
    n_past = media.eval_chunks(ctx, media.tokenize(PROMPT, [image(seed)]), 0, 0, 64)
    out = greedy_tokens(ctx, n_past, N)
    return b"".join(llm._vocab.token_to_piece(t) for t in out).decode("utf-8", errors="replace")


async def test_an_image_prompt_matches_mtmd_alone(llm, media):
    text, usage = await generate(llm, media, 1)
    assert text == oracle(llm, media, 1)
    assert usage["prompt_tokens"] > 16 and usage["completion_tokens"] == N


async def test_images_beside_text_requests_match_each_alone(llm, media):
    alone_images = [await generate(llm, media, s) for s in (2, 3)]
    alone_text = [await llm.create_completion(f"Text request {i}", max_tokens=N, temperature=0.0) for i in (1, 2)]
    results: dict = {}

    async def run_image(s):
        results[s] = await generate(llm, media, s)

    async def run_text(i):
        results[f"t{i}"] = await llm.create_completion(f"Text request {i}", max_tokens=N, temperature=0.0)

    async with anyio.create_task_group() as tg:
        for s in (2, 3):
            tg.start_soon(run_image, s)
        for i in (1, 2):
            tg.start_soon(run_text, i)
    assert [results[s][0] for s in (2, 3)] == [a[0] for a in alone_images]
    assert [results[f"t{i}"]["choices"][0]["text"] for i in (1, 2)] == [
        a["choices"][0]["text"] for a in alone_text]


async def test_prefix_reuse_keeps_images_apart(llm, media):
    first, _ = await generate(llm, media, 4)
    again, usage = await generate(llm, media, 4)  # same image: the prefix is reused
    assert again == first and usage["prompt_tokens_details"]["cached_tokens"] > 16
    fresh = 100 + next(FRESH)  # an image this model has not seen (the module's tests run twice)
    other, usage = await generate(llm, media, fresh)  # same text, another image: nothing past the text before it
    assert other == oracle(llm, media, fresh)
    _, spans = media_prompt(media.tokenize(PROMPT, [image(fresh)]), media)
    assert usage["prompt_tokens_details"]["cached_tokens"] <= spans[0].start


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_media_prompt_errors(llm, media):
    tokens, spans = media_prompt(media.tokenize("<__media__>", [image(6)]), media)
    with pytest.raises(ValueError, match="text after its last medium"):
        await llm.create_completion(tokens, media=spans, max_tokens=2)
    tokens, spans = media_prompt(media.tokenize(PROMPT, [image(6)]), media)
    with pytest.raises(ValueError, match="echo"):
        await llm.create_completion(tokens, media=spans, max_tokens=2, echo=True)
    with pytest.raises(ValueError, match="one list of token ids"):
        await llm.create_completion("text", media=spans, max_tokens=2)
