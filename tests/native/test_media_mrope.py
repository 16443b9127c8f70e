"""Images through mtmd into an M-RoPE text model: the tiny Qwen2-VL pair (llama.cpp arch
"qwen2vl" and a "qwen2vl_merger" projector, patch size 4: each 8 x 8 pixels of the resized image
make one token, and an image takes max(columns, rows) positions rather than one per token)."""

from __future__ import annotations

import numpy as np
import pytest

from allama import _native
from allama.testing.model_builder import LlamaConfig, Qwen2VLProjectorConfig, build_qwen2vl_projector

from ..native_context import make_context
from .test_media import _png

LLAMA_ROPE_TYPE_MROPE = 8  # llama.h
PROMPT = "Look: <__media__> What is it?"
PROJECTOR = Qwen2VLProjectorConfig()


@pytest.fixture(scope="module")
def model(qwen2vl_paths):
    return _native.Model.load(str(qwen2vl_paths[0]))


@pytest.fixture(scope="module")
def media(model, qwen2vl_paths):
    return _native.MediaContext(model, str(qwen2vl_paths[1]), n_threads=2)


def _chunk_shape(chunks) -> list[tuple[str, int, int]]:
    return [(chunks[i].type, chunks[i].n_tokens, chunks[i].n_pos) for i in range(len(chunks))]


def _decode(ctx, tokens, pos0: int, seq_id: int) -> None:
    batch = _native.Batch(len(tokens))
    for i, token in enumerate(tokens):
        batch.add(token, pos0 + i, seq_id, i == len(tokens) - 1)
    ctx.decode(batch)


def test_text_model_loads_with_mrope(model):
    assert model.rope_type == LLAMA_ROPE_TYPE_MROPE
    assert model.n_embd == 64


def test_projector_loads_for_it_with_vision_and_mrope_positions(media):
    assert media.supports_vision and not media.supports_audio
    assert media.uses_mrope
    assert media.n_embd == 64


@pytest.mark.parametrize("width, height, columns, rows", [
    (32, 32, 4, 4),
    (40, 30, 5, 4),  # each side rounded to a multiple of 8 pixels
    (8, 8, 3, 3),  # scaled up to at least 8 tokens
    (300, 2, 38, 1),
])
def test_an_image_takes_one_token_per_2x2_patches_and_its_longer_side_in_positions(media, width, height,
                                                                                  columns, rows):
    assert PROJECTOR.n_tokens(width, height) == (columns, rows)
    chunks = media.tokenize(PROMPT, [media.bitmap_from_bytes(_png(width, height))])
    shape = _chunk_shape(chunks)
    assert [kind for kind, _, _ in shape] == ["text", "image", "text"]
    assert shape[1][1:] == (columns * rows, max(columns, rows))
    for kind, n_tokens, n_pos in (shape[0], shape[2]):
        assert n_tokens == n_pos  # text takes one position a token
    assert chunks.n_tokens == shape[0][1] + columns * rows + shape[2][1]
    assert chunks.n_pos == shape[0][1] + max(columns, rows) + shape[2][1]


def test_eval_then_generate_greedily(model, media):
    eval_then_generate(model, media, _png(40, 30))


def eval_then_generate(model, media, image: bytes) -> None:
    """An image prompt evaluated by mtmd takes n_pos positions, generation from there gives
    finite logits, and the same prompt in a second sequence gives the same logits."""
    ctx = make_context(model, n_ctx=256, n_batch=64, n_seq_max=2)
    chunks = media.tokenize(PROMPT, [media.bitmap_from_bytes(image)])
    assert chunks[1].n_pos != chunks[1].n_tokens
    n_past = media.eval_chunks(ctx, chunks, 0, 0, 64)
    assert n_past == chunks.n_pos
    logits = ctx.logits(-1).copy()
    assert logits.ndim == 1 and np.isfinite(logits).all()
    generated = []
    for step in range(4):
        token = int(np.argmax(ctx.logits(-1)))
        generated.append(token)
        _decode(ctx, [token], n_past + step, 0)
        assert np.isfinite(ctx.logits(-1)).all()
    assert len(generated) == 4
    # the same prompt into another sequence gives the same next-token logits
    assert media.eval_chunks(ctx, chunks, 0, 1, 64) == n_past
    np.testing.assert_allclose(ctx.logits(-1), logits, atol=1e-4)


def test_text_after_an_image_continues_from_its_mrope_positions(model, media):
    """The engine's path: text decoded by itself around eval_media_chunk gives the logits of
    eval_chunks only when the text after the image starts at n_pos, not at n_tokens."""
    ctx = make_context(model, n_ctx=256, n_batch=64, n_seq_max=3)
    chunks = media.tokenize(PROMPT, [media.bitmap_from_bytes(_png(40, 30))])
    head, image, tail = chunks[0].tokens, chunks[1], chunks[2].tokens
    media.eval_chunks(ctx, chunks, 0, 0, 64)
    expected = ctx.logits(-1).copy()

    def piecewise(seq_id: int, tail_pos: int) -> np.ndarray:
        _decode(ctx, head, 0, seq_id)
        assert media.eval_media_chunk(ctx, chunks, 1, len(head), seq_id, 64) == len(head) + image.n_pos
        _decode(ctx, tail, tail_pos, seq_id)
        return ctx.logits(-1).copy()

    np.testing.assert_allclose(piecewise(1, len(head) + image.n_pos), expected, atol=1e-4)
    # one position a token, as without M-RoPE, is another prompt
    assert np.abs(piecewise(2, len(head) + image.n_tokens) - expected).max() > 1e-2


def test_generation_depends_on_the_image(model, media):
    ctx = make_context(model, n_ctx=256, n_batch=64, n_seq_max=2)
    rng = np.random.default_rng(3)
    logits = []
    for seq_id in range(2):
        pixels = np.ascontiguousarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        chunks = media.tokenize(PROMPT, [_native.Bitmap.from_rgb(pixels)])
        media.eval_chunks(ctx, chunks, 0, seq_id, 64)
        logits.append(ctx.logits(-1).copy())
    assert np.abs(logits[0] - logits[1]).max() > 1e-3


def test_projector_for_another_width_is_refused(model, tmp_path):
    path = build_qwen2vl_projector(tmp_path / "wide.gguf", PROJECTOR, LlamaConfig(n_embd=96))
    with pytest.raises(ValueError, match="mismatch between text model"):
        _native.MediaContext(model, str(path), n_threads=2)


def test_image_with_more_tokens_than_kv_cells_raises(model, media):
    # The image takes 25 positions, within the context, but its 625 tokens need 625 cells of a
    # 256-cell cache: an error, not a crash (today mtmd's failed decode: DecodeError).
    from allama.errors import DecodeError

    ctx = make_context(model, n_ctx=256, n_batch=64, n_seq_max=1)
    chunks = media.tokenize(PROMPT, [media.bitmap_from_bytes(_png(200, 200))])
    assert chunks.n_pos <= 256 < chunks.n_tokens
    with pytest.raises((ValueError, DecodeError)):
        media.eval_chunks(ctx, chunks, 0, 0, 64)


def test_token_counts_of_the_projector_config_are_mtmds(media):
    sizes = [(20, 20), (12, 36), (1, 1), (7, 100), (64, 8), (100, 7), (52, 44), (1000, 3), (333, 257)]
    got = {}
    for width, height in sizes:
        pixels = np.zeros((height, width, 3), np.uint8)
        image = media.tokenize("<__media__>", [_native.Bitmap.from_rgb(pixels)])
        chunk = next(image[i] for i in range(len(image)) if image[i].type == "image")
        got[width, height] = (chunk.n_tokens, chunk.n_pos)
    expected = {}
    for width, height in sizes:
        columns, rows = PROJECTOR.n_tokens(width, height)
        expected[width, height] = (columns * rows, max(columns, rows))
    assert got == expected
