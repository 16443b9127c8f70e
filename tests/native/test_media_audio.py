"""Audio through mtmd with the tiny "qwen2a" projector (a 1-layer Whisper encoder, 16 mel bins,
750 tokens of the tiny llama's width per 30 s window): decoding WAV files, splitting prompts,
evaluating audio into a sequence, and the errors for audio a projector cannot take."""

from __future__ import annotations

import hashlib
import io
import wave

import numpy as np
import pytest

from allama import _native
from allama.testing.model_builder import (AudioProjectorConfig, LlamaConfig, ProjectorConfig, build_audio_projector,
                                          build_projector)

from ..greedy import greedy_tokens
from ..native_context import make_context
from .isolated import run_isolated
from .test_media import _png

AUDIO = AudioProjectorConfig()
PROMPT = "Listen: <__media__> What was it?"
RATE = 16000


def _wav(n_frames: int, *, rate: int = RATE, channels: int = 1, hz: float = 440.0) -> bytes:
    """A 16-bit PCM WAV file (stdlib `wave`) of a sine tone, the same in every channel."""
    t = np.arange(n_frames) / rate
    tone = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(tone, channels).tobytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def audio_projector_path(models_dir):
    return build_audio_projector(models_dir / "audio-projector.gguf", AUDIO, LlamaConfig())


@pytest.fixture(scope="module")
def media(llama_model, audio_projector_path):
    return _native.MediaContext(llama_model, str(audio_projector_path), n_threads=2)


@pytest.fixture(scope="module")
def vision_media(llama_model, models_dir):
    path = build_projector(models_dir / "audio-test-vision-projector.gguf", ProjectorConfig(), LlamaConfig())
    return _native.MediaContext(llama_model, str(path), n_threads=2)


def _types(chunks) -> list[tuple[str, int]]:
    return [(chunks[i].type, chunks[i].n_tokens) for i in range(len(chunks))]


def test_audio_projector_loads_with_audio_support_only(media):
    assert media.supports_audio and not media.supports_vision
    assert media.audio_sample_rate == RATE
    assert media.marker == "<__media__>"


def test_a_vision_projector_reports_no_audio(vision_media):
    assert not vision_media.supports_audio and vision_media.audio_sample_rate == -1


def test_wav_decodes_to_16khz_mono_samples_with_the_file_hash_as_id(media):
    data = _wav(RATE)
    bitmap = media.bitmap_from_bytes(data)
    assert bitmap.is_audio and (bitmap.nx, bitmap.ny, bitmap.n_bytes) == (RATE, 1, RATE * 4)
    assert bitmap.id == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("rate, channels", [(8000, 1), (16000, 2), (44100, 2)])
def test_other_rates_and_stereo_are_resampled_to_16khz_mono(media, rate, channels):
    bitmap = media.bitmap_from_bytes(_wav(rate // 2, rate=rate, channels=channels))  # half a second
    assert bitmap.is_audio and abs(bitmap.nx - RATE // 2) <= 2


def test_wav_from_bytes_file_and_samples_give_the_same_chunks(media, tmp_path):
    data = _wav(RATE)
    (tmp_path / "a.wav").write_bytes(data)
    samples = np.frombuffer(data[44:], "<i2").astype(np.float32) / 32768  # after the 44-byte header
    bitmaps = [media.bitmap_from_bytes(data), media.bitmap_from_file(str(tmp_path / "a.wav")),
               _native.Bitmap.from_audio(samples)]
    assert [b.nx for b in bitmaps] == [RATE] * 3
    assert len({tuple(_types(media.tokenize(PROMPT, [b]))) for b in bitmaps}) == 1


def test_prompt_splits_into_text_audio_text_with_750_tokens_per_window(media):
    chunks = media.tokenize(PROMPT, [media.bitmap_from_bytes(_wav(RATE))])
    assert [t for t, _ in _types(chunks)] == ["text", "audio", "text"]
    audio = chunks[1]
    assert audio.n_tokens == audio.n_pos == AUDIO.n_tokens_per_window == 750
    assert audio.tokens == [] and len(audio.id) == 64
    assert chunks.n_tokens == chunks.n_pos == sum(n for _, n in _types(chunks))
    # qwen2a wraps the audio in <|audio_bos|> ... <|audio_eos|>: plain text for the tiny llama
    text_only = media.tokenize(PROMPT.replace("<__media__>", ""), [])
    assert chunks[0].n_tokens + chunks[2].n_tokens > text_only.n_tokens


@pytest.mark.parametrize("n_samples", [1000, 30 * RATE - 161, 30 * RATE - 160, 61 * RATE])
def test_long_clips_split_into_one_audio_chunk_per_30_second_window(media, n_samples):
    chunks = media.tokenize("<__media__>", [_native.Bitmap.from_audio(np.zeros(n_samples, np.float32))])
    audio = [n for t, n in _types(chunks) if t == "audio"]
    assert audio == [750] * AudioProjectorConfig.n_windows(n_samples)


def test_eval_audio_then_generate(llama_model, media):
    ctx = make_context(llama_model, n_ctx=2048, n_batch=256, n_seq_max=2)  # (cells shared by both sequences)
    chunks = media.tokenize(PROMPT, [media.bitmap_from_bytes(_wav(RATE))])
    n_past = media.eval_chunks(ctx, chunks, 0, 0, 256)
    assert n_past == chunks.n_pos > 750
    logits = ctx.logits(-1)
    assert logits.ndim == 1 and np.isfinite(logits).all()
    # the same prompt into another sequence gives the same next-token logits
    assert media.eval_chunks(ctx, chunks, 0, 1, 256) == n_past
    np.testing.assert_allclose(ctx.logits(-1), logits, atol=1e-4)
    ctx.seq_rm(1, -1, -1)
    tokens = greedy_tokens(ctx, n_past, 4)
    assert len(tokens) == 4 and all(0 <= t < len(logits) for t in tokens)


def test_the_audio_changes_the_logits(llama_model, media):
    def next_logits(data: bytes) -> np.ndarray:
        ctx = make_context(llama_model, n_ctx=1024, n_batch=256, n_seq_max=1)
        media.eval_chunks(ctx, media.tokenize(PROMPT, [media.bitmap_from_bytes(data)]), 0, 0, 256)
        return ctx.logits(-1).copy()

    tone, other = next_logits(_wav(RATE, hz=440.0)), next_logits(_wav(RATE, hz=3000.0))
    assert np.isfinite(tone).all() and np.abs(tone - other).max() > 1e-3
    np.testing.assert_allclose(next_logits(_wav(RATE, hz=440.0)), tone, atol=1e-5)  # and deterministically


def test_audio_longer_than_the_context_raises(llama_model, media):
    ctx = make_context(llama_model, n_ctx=256, n_batch=64, n_seq_max=1)
    chunks = media.tokenize(PROMPT, [media.bitmap_from_bytes(_wav(RATE))])
    with pytest.raises(ValueError, match="the prompt needs 7.. positions; the context has 256"):
        media.eval_chunks(ctx, chunks, 0, 0, 64)


@pytest.mark.parametrize("data", [
    b"RIFF\x24\x00\x00\x00WAVEfmt garbage after a WAV header",
    b"ID3" + bytes(64),  # an MP3 tag with no frames
    b"\xff\xfb" + bytes(range(200)),  # an MPEG sync word, then noise
    b"fLaC" + bytes(40),
    _wav(0),  # a WAV with no samples
], ids=["wav-header-then-garbage", "id3-only", "mpeg-sync-then-noise", "flac-magic-only", "empty-wav"])
def test_undecodable_audio_raises(media, data):
    with pytest.raises(ValueError, match="could not be decoded"):
        media.bitmap_from_bytes(data)


def test_audio_for_a_vision_only_projector_raises(vision_media):
    with pytest.raises(ValueError, match="does not take audio"):
        vision_media.tokenize(PROMPT, [_native.Bitmap.from_audio(np.zeros(RATE, np.float32))])
    with pytest.raises(ValueError, match="could not be decoded"):  # mtmd decodes audio only for audio projectors
        vision_media.bitmap_from_bytes(_wav(RATE))


def test_an_image_for_an_audio_only_projector_raises(media):
    image = media.bitmap_from_bytes(_png(16, 16))  # decoding needs no vision encoder
    with pytest.raises(ValueError, match="does not take images"):
        media.tokenize(PROMPT, [image])


# mtmd asserts (GGML_ASSERT(buf.size() > sizeof(float)) in add_media) on a one-sample clip:
# MediaContext.tokenize refuses it first. In a subprocess, so an abort cannot take pytest down.
def test_a_one_sample_clip_raises_instead_of_aborting(llama_f32_path, audio_projector_path):
    outcome = run_isolated(f"""
        import numpy as np
        from allama import _native
        model = _native.Model.load({str(llama_f32_path)!r})
        media = _native.MediaContext(model, {str(audio_projector_path)!r}, n_threads=1)
        media.tokenize("<__media__>", [_native.Bitmap.from_audio(np.zeros(1, np.float32))])
    """)
    assert outcome.is_a("ValueError"), outcome
