"""Media for mtmd: bitmaps from arrays, the default marker. (Projector loading and media
evaluation need a projector GGUF; bad projector files are in test_bad_input.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from allama import _native


def test_bitmap_from_rgb_keeps_size_and_bytes():
    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    bitmap = _native.Bitmap.from_rgb(pixels)
    assert (bitmap.nx, bitmap.ny, bitmap.n_bytes, bitmap.is_audio) == (6, 4, 72, False)
    bitmap.id = "image-1"
    assert bitmap.id == "image-1"


def test_bitmap_from_audio_samples():
    bitmap = _native.Bitmap.from_audio(np.zeros(1600, np.float32))
    assert bitmap.is_audio and bitmap.n_bytes == 1600 * 4


@pytest.mark.parametrize("pixels, error", [
    (np.zeros((4, 6, 4), np.uint8), ValueError),
    (np.zeros((0, 6, 3), np.uint8), ValueError),
    (np.zeros((4, 6, 3), np.float32), TypeError),  # no silent conversion of float pixels
    (np.zeros((4, 6), np.uint8), TypeError),
    (np.zeros((4, 6, 3), np.uint8)[:, ::2], TypeError),  # not contiguous
])
def test_bad_pixel_arrays_raise(pixels, error):
    with pytest.raises(error):
        _native.Bitmap.from_rgb(pixels)


def test_empty_audio_raises():
    with pytest.raises(ValueError, match="at least one sample"):
        _native.Bitmap.from_audio(np.zeros(0, np.float32))


def test_default_marker():
    assert _native.default_media_marker() == "<__media__>"


# --- with a tiny projector (mlp, 32x32 images -> 16 tokens of the tiny llama's width) ----------

PROMPT = "Look: <__media__> What is it?"


@pytest.fixture(scope="module")
def projector_path(models_dir):
    from allama.testing.model_builder import LlamaConfig, ProjectorConfig, build_projector

    return build_projector(models_dir / "projector.gguf", ProjectorConfig(), LlamaConfig())


@pytest.fixture(scope="module")
def media(llama_model, projector_path):
    return _native.MediaContext(llama_model, str(projector_path), n_threads=2)


def _png(width: int, height: int) -> bytes:
    import struct
    import zlib

    rows = b"".join(b"\x00" + bytes((x * 7 + y * 3) % 256 for x in range(width * 3)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_projector_loads_for_the_text_model(media):
    assert media.supports_vision and not media.supports_audio
    assert media.marker == "<__media__>"


def test_prompt_splits_into_text_image_text(media):
    image = media.bitmap_from_bytes(_png(40, 30))
    assert (image.nx, image.ny) == (40, 30) and len(image.id) == 64  # sha-256 of the file
    chunks = media.tokenize(PROMPT, [image])
    assert [c.type for c in (chunks[i] for i in range(len(chunks)))] == ["text", "image", "text"]
    assert chunks[1].n_tokens == 16
    assert chunks.n_tokens == sum(chunks[i].n_tokens for i in range(len(chunks)))
    assert chunks[0].tokens and chunks[1].tokens == []


def test_images_from_bytes_file_and_pixels_give_the_same_tokens(media, tmp_path):
    png = _png(32, 32)
    (tmp_path / "a.png").write_bytes(png)
    from_bytes = media.bitmap_from_bytes(png)
    from_file = media.bitmap_from_file(str(tmp_path / "a.png"))
    pixels = np.frombuffer(b"".join(bytes((x * 7 + y * 3) % 256 for x in range(96)) for y in range(32)),
                           np.uint8).reshape(32, 32, 3)
    from_pixels = _native.Bitmap.from_rgb(np.ascontiguousarray(pixels))
    for bitmap in (from_file, from_pixels):
        assert (bitmap.nx, bitmap.ny, bitmap.n_bytes) == (from_bytes.nx, from_bytes.ny, from_bytes.n_bytes)


def test_eval_then_generate(llama_model, media):
    from ..native_context import make_context

    ctx = make_context(llama_model, n_ctx=256, n_batch=64, n_seq_max=2)
    chunks = media.tokenize(PROMPT, [media.bitmap_from_bytes(_png(32, 32))])
    n_past = media.eval_chunks(ctx, chunks, 0, 0, 64)
    assert n_past == chunks.n_pos
    logits = ctx.logits(-1)
    assert logits.ndim == 1 and np.isfinite(logits).all()
    # the same prompt into another sequence gives the same next-token logits
    assert media.eval_chunks(ctx, chunks, 0, 1, 64) == n_past
    np.testing.assert_allclose(ctx.logits(-1), logits, atol=1e-4)


@pytest.mark.parametrize("text, images, message", [
    (PROMPT, 0, "number of media markers"),
    ("no marker here", 1, "number of media markers"),
])
def test_marker_count_must_match(media, text, images, message):
    bitmaps = [media.bitmap_from_bytes(_png(8, 8)) for _ in range(images)]
    with pytest.raises(ValueError, match=message):
        media.tokenize(text, bitmaps)


@pytest.mark.parametrize("data, message", [(b"not an image at all", "could not be decoded"), (b"", "empty")])
def test_undecodable_media_raises(media, data, message):
    with pytest.raises(ValueError, match=message):
        media.bitmap_from_bytes(data)


def test_too_many_media_tokens_for_the_context(llama_model, media):
    from ..native_context import make_context

    ctx = make_context(llama_model, n_ctx=256, n_batch=32, n_seq_max=1)  # (llama.cpp's smallest context)
    chunks = media.tokenize("<__media__>" * 20, [media.bitmap_from_bytes(_png(8, 8))] * 20)  # 20 x 16 tokens
    with pytest.raises(ValueError, match="the prompt needs 3.. positions; the context has 256"):
        media.eval_chunks(ctx, chunks, 0, 0, 32)


def test_memory_stays_flat_over_100_images(media):
    import resource

    png = _png(640, 480)  # ~0.9 MB of pixels a bitmap: a leak would show as ~90 MB

    def churn(n: int) -> None:
        for _ in range(n):
            media.tokenize(PROMPT, [media.bitmap_from_bytes(png)])

    churn(20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    churn(100)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert after - before < 16 * 1024  # KiB
