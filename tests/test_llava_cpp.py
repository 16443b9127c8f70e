"""allama.llava_cpp: llama-cpp-python's llava functions over mtmd: an image embed evaluated
into a context continues generation exactly as the media prompt does."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from allama import _native
from allama import llava_cpp as llava
from allama.testing.model_builder import LlamaConfig, ProjectorConfig, build_llama, build_projector

from .greedy import greedy_tokens
from .native_context import make_context
from .native.test_media import PROMPT, _png

PNG = _png(32, 32)


@pytest.fixture(scope="module")
def projector_path(models_dir):
    return build_projector(models_dir / "llava-projector.gguf", ProjectorConfig(), LlamaConfig())


@pytest.fixture()
def clip(llama_model, projector_path):
    ctx_clip = llava.clip_model_load(str(projector_path).encode(), 0)
    assert llava.llava_validate_embed_size(make_context(llama_model, n_ctx=64, n_seq_max=1), ctx_clip)
    return ctx_clip


def decode_text(ctx: _native.Context, tokens: list[int], n_past: int) -> int:
    batch = _native.Batch(len(tokens))
    batch.add_tokens(tokens, n_past, 0, True)
    ctx.decode(batch)
    return n_past + len(tokens)


def test_an_image_embed_evaluated_then_generation_continues_as_the_media_prompt(llama_model, clip):
    media = clip.media()
    chunks = media.tokenize(PROMPT, [media.bitmap_from_bytes(PNG)])
    reference = make_context(llama_model, n_ctx=256, n_batch=64, n_seq_max=1)
    end = media.eval_chunks(reference, chunks, 0, 0, 64)
    logits = reference.logits(-1)
    expected = greedy_tokens(reference, end, 8)

    embed = llava.llava_image_embed_make_with_bytes(clip, 2, bytearray(PNG), len(PNG))
    assert embed.n_image_pos == 16 and embed.embed.shape == (16, llama_model.n_embd)
    ctx = make_context(llama_model, n_ctx=256, n_batch=64, n_seq_max=1)
    n_past = decode_text(ctx, chunks[0].tokens, 0)
    n_past_cell = ctypes.c_int(n_past)
    assert llava.llava_eval_image_embed(ctx, embed, 64, ctypes.byref(n_past_cell)) == n_past + 16
    assert n_past_cell.value == n_past + 16
    n_past = decode_text(ctx, chunks[2].tokens, n_past_cell.value)
    assert n_past == end
    np.testing.assert_allclose(ctx.logits(-1), logits, atol=1e-4)
    assert greedy_tokens(ctx, n_past, 8) == expected
    llava.llava_image_embed_free(embed)


def test_file_and_bytes_give_the_same_embedding(clip, tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(PNG)
    from_file = llava.llava_image_embed_make_with_filename(clip, 2, str(path).encode())
    from_bytes = llava.llava_image_embed_make_with_bytes(clip, 2, PNG + b"trailing", len(PNG))
    np.testing.assert_array_equal(from_file.embed, from_bytes.embed)


def test_validate_embed_size(llama_model, projector_path, models_dir):
    assert llava.llava_validate_embed_size(64, 64) and not llava.llava_validate_embed_size(64, 32)
    wide = build_llama(models_dir / "llava-wide.gguf", LlamaConfig(n_embd=96, n_head=4, n_head_kv=2))[0]
    other = _native.Model.load(str(wide))
    ctx_clip = llava.clip_model_load(str(projector_path))
    assert not llava.llava_validate_embed_size(make_context(other, n_ctx=64, n_seq_max=1), ctx_clip)
    assert llava.llava_validate_embed_size(llama_model, ctx_clip)


def test_freed_and_unbound_handles_raise(llama_model, projector_path, clip):
    unbound = llava.clip_model_load(str(projector_path))
    with pytest.raises(ValueError, match="not bound"):
        llava.llava_image_embed_make_with_bytes(unbound, 2, PNG, len(PNG))
    embed = llava.llava_image_embed_make_with_bytes(clip, 2, PNG, len(PNG))
    llava.llava_image_embed_free(embed)
    with pytest.raises(ValueError, match="freed"):
        llava.llava_eval_image_embed(make_context(llama_model, n_ctx=64, n_seq_max=1), embed, 64, 0)
    with pytest.raises(ValueError, match="freed"):
        llava.llava_image_embed_free(embed)
    llava.clip_free(clip)
    with pytest.raises(ValueError, match="freed"):
        llava.llava_image_embed_make_with_bytes(clip, 2, PNG, len(PNG))
    with pytest.raises(ValueError, match="freed"):
        llava.clip_free(clip)


@pytest.mark.parametrize("make, message", [
    (lambda clip: llava.llava_image_embed_make_with_bytes(clip, 2, b"not an image", 12), "could not be decoded"),
    (lambda clip: llava.llava_image_embed_make_with_bytes(clip, 2, PNG, len(PNG) + 1), "image_bytes_length"),
    (lambda clip: llava.llava_image_embed_make_with_bytes(clip, 2, PNG, 0), "image_bytes_length"),
    (lambda clip: llava.llava_image_embed_make_with_filename(clip, 2, "/nonexistent.png"), "does not exist"),
])
def test_bad_images_raise(clip, make, message):
    with pytest.raises(ValueError, match=message):
        make(clip)


def test_bad_projector_files_raise(tmp_path, llama_f32_path):
    (tmp_path / "junk.gguf").write_bytes(b"this is no gguf")
    with pytest.raises(ValueError, match="does not exist"):
        llava.clip_model_load(tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="not a GGUF"):
        llava.clip_model_load(tmp_path / "junk.gguf")
    with pytest.raises(ValueError, match="no vision encoder"):
        llava.clip_model_load(llama_f32_path)  # a text model, not a projector


def test_an_image_that_does_not_fit_the_context_raises(llama_model, clip):
    embed = llava.llava_image_embed_make_with_bytes(clip, 2, PNG, len(PNG))
    ctx = make_context(llama_model, n_ctx=32, n_batch=32, n_seq_max=1)
    with pytest.raises(ValueError, match="does not fit"):
        llava.llava_eval_image_embed(ctx, embed, 32, ctx.n_ctx - embed.n_image_pos + 1)
    with pytest.raises(ValueError, match="n_batch"):
        llava.llava_eval_image_embed(ctx, embed, 0, 0)
    with pytest.raises(TypeError, match="context"):
        llava.llava_eval_image_embed("not a context", embed, 32, 0)
