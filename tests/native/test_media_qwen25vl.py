"""Images through mtmd's Qwen2.5-VL projector ("qwen2.5vl_merger") into the tiny Qwen2-VL text model
(Qwen2.5-VL's text side is llama.cpp arch qwen2vl too): tokens and M-RoPE positions as with Qwen2-VL's
projector, and an encoder whose windowed blocks attend within 112 x 112-pixel windows (14 x 14 tokens
at patch size 4) while every n_wa_pattern-th block attends to the whole image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from allama import _native
from allama.testing.model_builder import LlamaConfig, Qwen2VLConfig, Qwen25VLProjectorConfig, build_qwen25vl_projector

from ..native_context import make_context
from .test_media import _png
from .test_media_mrope import PROMPT, eval_then_generate

PROJECTOR = Qwen25VLProjectorConfig()


@pytest.fixture(scope="module")
def model(qwen25vl_paths):
    return _native.Model.load(str(qwen25vl_paths[0]))


@pytest.fixture(scope="module")
def media(model, qwen25vl_paths):
    return _native.MediaContext(model, str(qwen25vl_paths[1]), n_threads=2)


@pytest.fixture(scope="module")
def media_all_windowed(model, tmp_path_factory):
    """The same weights with no full-attention block (n_wa_pattern past the last block)."""
    config = dataclasses.replace(PROJECTOR, n_wa_pattern=PROJECTOR.n_layer + 1)
    assert config.full_attention_blocks == ()
    path = build_qwen25vl_projector(tmp_path_factory.mktemp("qwen25vl") / "all-windowed.gguf", config, Qwen2VLConfig())
    return _native.MediaContext(model, str(path), n_threads=2)


def _embeddings(media, pixels: np.ndarray) -> np.ndarray:
    """The projector's output for an image given as (height, width, 3) uint8: one row per token,
    row-major over the token grid."""
    chunks = media.tokenize("<__media__>", [_native.Bitmap.from_rgb(np.ascontiguousarray(pixels))])
    index = next(i for i in range(len(chunks)) if chunks[i].type == "image")
    return media.encode_media_chunk(chunks, index)


def test_projector_loads_beside_the_qwen2vl_text_model_with_mrope_positions(model, media):
    assert media.supports_vision and not media.supports_audio
    assert media.uses_mrope
    assert media.n_embd == model.n_embd == 64


@pytest.mark.parametrize("width, height, columns, rows", [
    (40, 30, 5, 4),
    (120, 16, 15, 2),  # two windows side by side: 14 columns and 1
    (8, 8, 3, 3),  # scaled up to at least 8 tokens
    (200, 200, 25, 25),
])
def test_an_image_takes_qwen2vl_tokens_and_its_longer_side_in_positions(media, width, height, columns, rows):
    assert PROJECTOR.n_tokens(width, height) == (columns, rows)
    chunks = media.tokenize(PROMPT, [media.bitmap_from_bytes(_png(width, height))])
    shape = [(chunks[i].type, chunks[i].n_tokens, chunks[i].n_pos) for i in range(len(chunks))]
    assert [kind for kind, _, _ in shape] == ["text", "image", "text"]
    assert shape[1][1:] == (columns * rows, max(columns, rows))
    assert chunks.n_pos == shape[0][1] + max(columns, rows) + shape[2][1]
    assert chunks.n_tokens == shape[0][1] + columns * rows + shape[2][1]


def test_eval_then_generate_greedily(model, media):
    eval_then_generate(model, media, _png(120, 16))  # the image spans two windows


def test_generation_depends_on_the_image(model, media):
    ctx = make_context(model, n_ctx=256, n_batch=64, n_seq_max=2)
    rng = np.random.default_rng(5)
    logits = []
    for seq_id in range(2):
        pixels = np.ascontiguousarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        chunks = media.tokenize(PROMPT, [_native.Bitmap.from_rgb(pixels)])
        media.eval_chunks(ctx, chunks, 0, seq_id, 64)
        logits.append(ctx.logits(-1).copy())
    assert np.abs(logits[0] - logits[1]).max() > 1e-3


@pytest.mark.parametrize("width, height", [(40, 32), (112, 112)])
def test_an_image_within_one_window_encodes_alike_windowed_or_not(media, media_all_windowed, width, height):
    # the windowed block's window is the whole image, so it attends as a full block does
    pixels = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    np.testing.assert_allclose(_embeddings(media_all_windowed, pixels), _embeddings(media, pixels), atol=1e-5)


@pytest.mark.parametrize("width, height", [(120, 16), (16, 120), (120, 120)])
def test_an_image_across_windows_encodes_differently_windowed_or_not(media, media_all_windowed, width, height):
    pixels = np.random.default_rng(width + height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert np.abs(_embeddings(media_all_windowed, pixels) - _embeddings(media, pixels)).max() > 1e-3


def test_a_windowed_block_sees_only_its_window_and_a_full_block_the_whole_image(media, media_all_windowed):
    # 120 x 16 pixels: 15 x 2 tokens, a window of 14 columns and one of 1. Changing the pixels of the
    # second window (x >= 112) changes only its tokens when every block is windowed.
    columns, rows = PROJECTOR.n_tokens(120, 16)
    window = PROJECTOR.window_tokens
    assert (columns, rows, window) == (15, 2, 14)
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 256, (16, 120, 3), dtype=np.uint8)
    changed = pixels.copy()
    changed[:, 112:] = rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)

    def difference(media) -> np.ndarray:
        """Largest change per token, as a rows x columns grid."""
        delta = np.abs(_embeddings(media, changed) - _embeddings(media, pixels)).max(axis=1)
        return delta.reshape(rows, columns)

    windowed = difference(media_all_windowed)
    assert windowed[:, :window].max() < 1e-6
    assert windowed[:, window:].min() > 1e-3
    full = difference(media)  # its second block attends across the windows
    assert full[:, :window].min() > 0.0


def test_projector_for_another_width_is_refused(model, tmp_path):
    path = build_qwen25vl_projector(tmp_path / "wide.gguf", PROJECTOR, LlamaConfig(n_embd=96))
    with pytest.raises(ValueError, match="mismatch between text model"):
        _native.MediaContext(model, str(path), n_threads=2)


def _with_u32(source, target, key: str, value: int):
    """A copy of a GGUF file with one u32 metadata value changed in place."""
    import struct

    data = bytearray(source.read_bytes())
    name = key.encode()
    at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    assert struct.unpack_from("<I", data, at)[0] == 4  # GGUF_TYPE_UINT32
    struct.pack_into("<I", data, at + 4, value)
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("key, value, message", [
    ("clip.vision.n_wa_pattern", 1, "n_wa_pattern 1"),     # clip.cpp would abort: no block reads the window mask
    ("clip.vision.patch_size", 64, "narrower than two patches"),  # its window loop would never end
])
def test_projector_settings_mtmd_cannot_run_are_refused(qwen25vl_paths, tmp_path, key, value, message):
    """In a subprocess: without the check, mtmd aborts the process or hangs on these files."""
    from .isolated import run_isolated

    path = _with_u32(qwen25vl_paths[1], tmp_path / "bad.gguf", key, value)
    outcome = run_isolated(f"""
        import numpy as np
        from allama import _native
        model = _native.Model.load({str(qwen25vl_paths[0])!r})
        try:
            media = _native.MediaContext(model, {str(path)!r}, n_threads=1)
            chunks = media.tokenize("<__media__>", [_native.Bitmap.from_rgb(np.zeros((160, 160, 3), np.uint8))])
            image = next(i for i in range(len(chunks)) if chunks[i].type == "image")
            media.encode_media_chunk(chunks, image)  # where mtmd would abort or hang
        except ValueError as exc:
            print("ValueError", exc)
            raise
    """, timeout=120)
    assert outcome.is_a("ValueError") and message in str(outcome), outcome
