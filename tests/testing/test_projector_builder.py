"""The test mmproj builders write what llama.cpp's clip loader reads: the "mlp" image
projector, the "qwen2a" (Whisper encoder) audio projector, and the "qwen2vl_merger" and
"qwen2.5vl_merger" image projectors.

These tests check the files; mtmd loading and running them is in tests/native/test_media.py,
tests/native/test_media_audio.py, tests/native/test_media_mrope.py and
tests/native/test_media_qwen25vl.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from allama.testing.model_builder import (LLAMA_PRESETS, AudioProjectorConfig, LlamaConfig, ProjectorConfig,
                                          Qwen2VLConfig, Qwen2VLProjectorConfig, Qwen25VLProjectorConfig,
                                          build_audio_projector, build_projector, build_qwen2vl_projector,
                                          build_qwen25vl_projector, main)

gguf = pytest.importorskip("gguf")

CONFIG = ProjectorConfig()
TEXT = LlamaConfig()


def _read(path: Path) -> tuple[dict, dict]:
    """(key -> (value types, value), tensor name -> ReaderTensor) of a GGUF file."""
    reader = gguf.GGUFReader(path)
    fields = {name: (field.types, field.contents()) for name, field in reader.fields.items()}
    return fields, {t.name: t for t in reader.tensors}


@pytest.fixture(scope="module")
def projector(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    return _read(build_projector(tmp_path_factory.mktemp("mmproj") / "mmproj.gguf", CONFIG, TEXT))


def test_header_declares_a_vision_encoder_with_the_mlp_projector(projector):
    fields, _ = projector
    assert fields["general.architecture"][1] == "clip"
    assert fields["clip.has_vision_encoder"][1] is True
    assert fields["clip.projector_type"][1] == "mlp"


def test_vision_hparams_are_uint32_as_the_loader_reads_them(projector):
    # clip.cpp reads these with gguf_get_val_u32, which aborts on any other type.
    fields, _ = projector
    expected = {
        "clip.vision.image_size": CONFIG.image_size,
        "clip.vision.patch_size": CONFIG.patch_size,
        "clip.vision.embedding_length": CONFIG.n_embd,
        "clip.vision.feed_forward_length": CONFIG.n_ff,
        "clip.vision.block_count": CONFIG.n_layer,
        "clip.vision.attention.head_count": CONFIG.n_head,
        "clip.vision.projection_dim": TEXT.n_embd,
    }
    for key, value in expected.items():
        types, content = fields[key]
        assert types == [gguf.GGUFValueType.UINT32], key
        assert content == value, key
    types, eps = fields["clip.vision.attention.layer_norm_epsilon"]
    assert types == [gguf.GGUFValueType.FLOAT32]
    assert eps == pytest.approx(CONFIG.layer_norm_eps)


def test_image_normalisation_is_three_float32_values_each(projector):
    fields, _ = projector
    expected = {"clip.vision.image_mean": CONFIG.image_mean, "clip.vision.image_std": CONFIG.image_std}
    for key, value in expected.items():
        types, content = fields[key]
        assert types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT32]
        assert content == pytest.approx(list(value))


def test_projector_output_width_is_the_text_models_embedding_width(projector):
    # mtmd refuses a projector whose mm.2.weight ne[1] differs from the text model's n_embd.
    _, tensors = projector
    assert tensors["mm.0.weight"].shape.tolist() == [CONFIG.n_embd, TEXT.n_embd]
    assert tensors["mm.2.weight"].shape.tolist() == [TEXT.n_embd, TEXT.n_embd]
    assert tensors["mm.2.bias"].shape.tolist() == [TEXT.n_embd]


def test_projector_width_follows_another_text_model(tmp_path):
    text = LlamaConfig(n_embd=96, n_head=4, n_head_kv=2)
    _, tensors = _read(build_projector(tmp_path / "wide.gguf", CONFIG, text))
    assert tensors["mm.2.weight"].shape.tolist()[1] == 96


def test_encoder_tensors_have_clip_layout(projector):
    _, tensors = projector
    c = CONFIG
    shapes = {  # ggml ne order, as clip.cpp sees them
        "v.patch_embd.weight": [c.patch_size, c.patch_size, 3, c.n_embd],
        "v.position_embd.weight": [c.n_embd, c.n_patches],
        "v.pre_ln.weight": [c.n_embd],
        "v.pre_ln.bias": [c.n_embd],
        "mm.0.bias": [TEXT.n_embd],
    }
    for i in range(c.n_layer):
        for name in ("ln1", "ln2"):
            shapes[f"v.blk.{i}.{name}.weight"] = [c.n_embd]
            shapes[f"v.blk.{i}.{name}.bias"] = [c.n_embd]
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            shapes[f"v.blk.{i}.{name}.weight"] = [c.n_embd, c.n_embd]
            shapes[f"v.blk.{i}.{name}.bias"] = [c.n_embd]
        # ffn_down's input width must not be n_embd, or clip.cpp swaps up and down
        shapes[f"v.blk.{i}.ffn_up.weight"] = [c.n_embd, c.n_ff]
        shapes[f"v.blk.{i}.ffn_up.bias"] = [c.n_ff]
        shapes[f"v.blk.{i}.ffn_down.weight"] = [c.n_ff, c.n_embd]
        shapes[f"v.blk.{i}.ffn_down.bias"] = [c.n_embd]
    assert set(tensors) == set(shapes) | {"mm.0.weight", "mm.2.weight", "mm.2.bias"}
    for name, shape in shapes.items():
        assert tensors[name].shape.tolist() == shape, name


def test_one_image_yields_one_token_per_patch():
    assert CONFIG.n_patches == 16
    assert ProjectorConfig(image_size=64, patch_size=16).n_patches == 16


def test_f16_keeps_norms_biases_and_positions_f32(tmp_path):
    _, tensors = _read(build_projector(tmp_path / "f16.gguf", dataclasses.replace(CONFIG, dtype="f16"), TEXT))
    f16, f32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
    assert tensors["v.patch_embd.weight"].tensor_type == f16
    assert tensors["v.blk.0.attn_q.weight"].tensor_type == f16
    assert tensors["mm.2.weight"].tensor_type == f16
    assert tensors["v.position_embd.weight"].tensor_type == f32
    assert tensors["v.blk.0.ln1.weight"].tensor_type == f32
    assert tensors["mm.0.bias"].tensor_type == f32


def test_same_seed_writes_identical_files_and_another_seed_differs(tmp_path):
    a = build_projector(tmp_path / "a.gguf", CONFIG, TEXT)
    b = build_projector(tmp_path / "b.gguf", CONFIG, TEXT)
    c = build_projector(tmp_path / "c.gguf", dataclasses.replace(CONFIG, seed=CONFIG.seed + 1), TEXT)
    assert a.read_bytes() == b.read_bytes()
    _, ta = _read(a)
    _, tc = _read(c)
    assert not np.array_equal(ta["mm.2.weight"].data, tc["mm.2.weight"].data)


@pytest.mark.parametrize(
    "change",
    [{"image_size": 30}, {"n_head": 5}, {"n_ff": CONFIG.n_embd}],
    ids=["image-not-whole-patches", "heads-do-not-divide-width", "square-ffn"],
)
def test_rejects_shapes_clip_cannot_run(tmp_path, change):
    with pytest.raises(ValueError):
        build_projector(tmp_path / "bad.gguf", dataclasses.replace(CONFIG, **change), TEXT)


def test_command_line_builds_a_projector_for_a_preset(tmp_path, capsys):
    out = tmp_path / "cli.gguf"
    assert main(["projector", str(out), "--preset", "bench", "--dtype", "f16"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    _, tensors = _read(out)
    assert tensors["mm.2.weight"].shape.tolist()[1] == LLAMA_PRESETS["bench"].n_embd
    assert tensors["mm.2.weight"].tensor_type == gguf.GGMLQuantizationType.F16


# --- the audio projector (clip.projector_type "qwen2a": Whisper encoder + one linear layer) ---

AUDIO = AudioProjectorConfig()


@pytest.fixture(scope="module")
def audio_projector(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    return _read(build_audio_projector(tmp_path_factory.mktemp("audio") / "audio.gguf", AUDIO, TEXT))


def test_audio_header_declares_only_an_audio_encoder_with_the_qwen2a_projector(audio_projector):
    fields, _ = audio_projector
    assert fields["general.architecture"][1] == "clip"
    assert fields["clip.has_audio_encoder"][1] is True
    assert "clip.has_vision_encoder" not in fields  # mtmd then reports no vision support
    assert fields["clip.projector_type"][1] == "qwen2a"


def test_audio_hparams_are_uint32_as_the_loader_reads_them(audio_projector):
    fields, _ = audio_projector
    expected = {
        "clip.audio.num_mel_bins": AUDIO.n_mel_bins,
        "clip.audio.embedding_length": AUDIO.n_embd,
        "clip.audio.feed_forward_length": AUDIO.n_ff,
        "clip.audio.block_count": AUDIO.n_layer,
        "clip.audio.attention.head_count": AUDIO.n_head,
        "clip.audio.projection_dim": TEXT.n_embd,
    }
    for key, value in expected.items():
        types, content = fields[key]
        assert types == [gguf.GGUFValueType.UINT32], key
        assert content == value, key
    types, eps = fields["clip.audio.attention.layer_norm_epsilon"]
    assert types == [gguf.GGUFValueType.FLOAT32]
    assert eps == pytest.approx(AUDIO.layer_norm_eps)


def test_audio_encoder_tensors_have_whisper_layout(audio_projector):
    _, tensors = audio_projector
    c = AUDIO
    shapes = {  # ggml ne order, as clip.cpp sees them
        "a.conv1d.1.weight": [3, c.n_mel_bins, c.n_embd],
        "a.conv1d.1.bias": [1, c.n_embd],
        "a.conv1d.2.weight": [3, c.n_embd, c.n_embd],
        "a.conv1d.2.bias": [1, c.n_embd],
        # clip.cpp asserts at least one position per frame after the stride-2 conv
        "a.position_embd.weight": [c.n_embd, 1500],
        "a.post_ln.weight": [c.n_embd],
        "a.post_ln.bias": [c.n_embd],
        "mm.a.fc.weight": [c.n_embd, TEXT.n_embd],
        "mm.a.fc.bias": [TEXT.n_embd],
    }
    for i in range(c.n_layer):
        for name in ("ln1", "ln2"):
            shapes[f"a.blk.{i}.{name}.weight"] = [c.n_embd]
            shapes[f"a.blk.{i}.{name}.bias"] = [c.n_embd]
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            shapes[f"a.blk.{i}.{name}.weight"] = [c.n_embd, c.n_embd]
        for name in ("attn_q", "attn_v", "attn_out"):  # the Whisper graph asserts no key bias
            shapes[f"a.blk.{i}.{name}.bias"] = [c.n_embd]
        shapes[f"a.blk.{i}.ffn_up.weight"] = [c.n_embd, c.n_ff]
        shapes[f"a.blk.{i}.ffn_up.bias"] = [c.n_ff]
        shapes[f"a.blk.{i}.ffn_down.weight"] = [c.n_ff, c.n_embd]
        shapes[f"a.blk.{i}.ffn_down.bias"] = [c.n_embd]
    assert set(tensors) == set(shapes)
    for name, shape in shapes.items():
        assert tensors[name].shape.tolist() == shape, name


def test_audio_projector_width_follows_the_text_model(tmp_path):
    text = LlamaConfig(n_embd=96, n_head=4, n_head_kv=2)
    fields, tensors = _read(build_audio_projector(tmp_path / "wide.gguf", AUDIO, text))
    assert tensors["mm.a.fc.weight"].shape.tolist() == [AUDIO.n_embd, 96]
    assert fields["clip.audio.projection_dim"][1] == 96


def test_a_30_second_window_yields_750_tokens():
    # 3000 mel frames -> 1500 after the stride-2 conv -> 750 after the average pool
    assert AUDIO.n_positions == 1500 and AUDIO.n_tokens_per_window == 750


@pytest.mark.parametrize("n_samples, windows", [
    (1, 1), (16000, 1), (30 * 16000 - 161, 1), (30 * 16000, 2), (31 * 16000, 2), (60 * 16000, 3),
])
def test_windows_per_clip_count_whole_30_second_windows_after_30_seconds_of_padding(n_samples, windows):
    assert AudioProjectorConfig.n_windows(n_samples) == windows


def test_audio_f16_keeps_norms_biases_and_positions_f32(tmp_path):
    _, tensors = _read(build_audio_projector(tmp_path / "f16.gguf", dataclasses.replace(AUDIO, dtype="f16"), TEXT))
    f16, f32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
    for name in ("a.conv1d.1.weight", "a.blk.0.attn_k.weight", "a.blk.0.ffn_up.weight", "mm.a.fc.weight"):
        assert tensors[name].tensor_type == f16, name
    for name in ("a.conv1d.1.bias", "a.position_embd.weight", "a.blk.0.ln1.weight", "a.post_ln.bias", "mm.a.fc.bias"):
        assert tensors[name].tensor_type == f32, name


def test_same_seed_writes_identical_audio_projectors_and_another_seed_differs(tmp_path):
    a = build_audio_projector(tmp_path / "a.gguf", AUDIO, TEXT)
    b = build_audio_projector(tmp_path / "b.gguf", AUDIO, TEXT)
    c = build_audio_projector(tmp_path / "c.gguf", dataclasses.replace(AUDIO, seed=AUDIO.seed + 1), TEXT)
    assert a.read_bytes() == b.read_bytes()
    assert not np.array_equal(_read(a)[1]["mm.a.fc.weight"].data, _read(c)[1]["mm.a.fc.weight"].data)


@pytest.mark.parametrize(
    "change",
    [{"n_head": 3}, {"n_layer": 0}, {"n_mel_bins": 0}, {"n_head": 0}],
    ids=["heads-do-not-divide-width", "no-layers", "no-mel-bins", "no-heads"],
)
def test_rejects_audio_shapes_clip_cannot_run(tmp_path, change):
    with pytest.raises(ValueError):
        build_audio_projector(tmp_path / "bad.gguf", dataclasses.replace(AUDIO, **change), TEXT)


def test_command_line_builds_an_audio_projector_for_a_preset(tmp_path, capsys):
    out = tmp_path / "cli-audio.gguf"
    assert main(["audio-projector", str(out), "--preset", "bench", "--seed", "7"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    fields, tensors = _read(out)
    assert fields["clip.projector_type"][1] == "qwen2a"
    assert tensors["mm.a.fc.weight"].shape.tolist()[1] == LLAMA_PRESETS["bench"].n_embd


# --- the Qwen2-VL projector (clip.projector_type "qwen2vl_merger": ViT with M-RoPE + patch merger) ---

QWEN2VL = Qwen2VLProjectorConfig()
QWEN2VL_TEXT = Qwen2VLConfig()


@pytest.fixture(scope="module")
def qwen2vl_projector(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    path = tmp_path_factory.mktemp("qwen2vl") / "qwen2vl-mmproj.gguf"
    return _read(build_qwen2vl_projector(path, QWEN2VL, QWEN2VL_TEXT))


def test_qwen2vl_header_declares_a_vision_encoder_with_the_merger(qwen2vl_projector):
    fields, _ = qwen2vl_projector
    assert fields["general.architecture"][1] == "clip"
    assert fields["clip.has_vision_encoder"][1] is True
    assert fields["clip.projector_type"][1] == "qwen2vl_merger"
    # clip.cpp's graph merges 2x2 patches whatever this says; quick GELU is the default FFN
    for absent in ("clip.vision.spatial_merge_size", "clip.use_gelu", "clip.use_silu", "clip.vision.n_wa_pattern"):
        assert absent not in fields


def test_qwen2vl_hparams_are_uint32_as_the_loader_reads_them(qwen2vl_projector):
    fields, _ = qwen2vl_projector
    expected = {
        "clip.vision.image_size": QWEN2VL.image_size,
        "clip.vision.patch_size": QWEN2VL.patch_size,
        "clip.vision.embedding_length": QWEN2VL.n_embd,
        "clip.vision.feed_forward_length": QWEN2VL.n_ff,
        "clip.vision.block_count": QWEN2VL.n_layer,
        "clip.vision.attention.head_count": QWEN2VL.n_head,
        "clip.vision.projection_dim": QWEN2VL_TEXT.n_embd,
    }
    for key, value in expected.items():
        types, content = fields[key]
        assert types == [gguf.GGUFValueType.UINT32], key
        assert content == value, key
    assert fields["clip.vision.attention.layer_norm_epsilon"][1] == pytest.approx(QWEN2VL.layer_norm_eps)
    assert fields["clip.vision.image_mean"][1] == pytest.approx(list(QWEN2VL.image_mean))


def test_qwen2vl_tensors_have_the_merger_layout(qwen2vl_projector):
    _, tensors = qwen2vl_projector
    c, merged = QWEN2VL, 4 * QWEN2VL.n_embd
    shapes = {  # ggml ne order, as clip.cpp sees them
        "v.patch_embd.weight": [c.patch_size, c.patch_size, 3, c.n_embd],
        "v.patch_embd.weight.1": [c.patch_size, c.patch_size, 3, c.n_embd],  # the temporal patch's second frame
        "v.post_ln.weight": [c.n_embd],
        "v.post_ln.bias": [c.n_embd],
        "mm.0.weight": [merged, merged],
        "mm.0.bias": [merged],
        "mm.2.weight": [merged, QWEN2VL_TEXT.n_embd],
        "mm.2.bias": [QWEN2VL_TEXT.n_embd],  # clip.cpp takes the output width from this bias
    }
    for i in range(c.n_layer):
        for name in ("ln1", "ln2"):
            shapes[f"v.blk.{i}.{name}.weight"] = [c.n_embd]
            shapes[f"v.blk.{i}.{name}.bias"] = [c.n_embd]
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            shapes[f"v.blk.{i}.{name}.weight"] = [c.n_embd, c.n_embd]
            shapes[f"v.blk.{i}.{name}.bias"] = [c.n_embd]
        shapes[f"v.blk.{i}.ffn_up.weight"] = [c.n_embd, c.n_ff]
        shapes[f"v.blk.{i}.ffn_up.bias"] = [c.n_ff]
        shapes[f"v.blk.{i}.ffn_down.weight"] = [c.n_ff, c.n_embd]
        shapes[f"v.blk.{i}.ffn_down.bias"] = [c.n_embd]
    # no learned positions, pre-norm or patch bias: the qwen2vl graph asserts the last two away
    assert set(tensors) == set(shapes)
    for name, shape in shapes.items():
        assert tensors[name].shape.tolist() == shape, name


def test_qwen2vl_projector_width_follows_the_text_model(tmp_path):
    text = Qwen2VLConfig(n_embd=96, n_head=4, n_head_kv=2, rope_sections=(4, 4, 4, 0))
    fields, tensors = _read(build_qwen2vl_projector(tmp_path / "wide.gguf", QWEN2VL, text))
    assert tensors["mm.2.weight"].shape.tolist() == [4 * QWEN2VL.n_embd, 96]
    assert fields["clip.vision.projection_dim"][1] == 96


@pytest.mark.parametrize("width, height, tokens", [
    (32, 32, (4, 4)),
    (40, 30, (5, 4)),  # sides rounded to multiples of 2 * patch_size
    (1, 1, (3, 3)),  # scaled up to at least 8 tokens
    (8, 8, (3, 3)),
    (1000, 1000, (64, 64)),  # scaled down to at most 4096 tokens
    (300, 2, (38, 1)),
])
def test_qwen2vl_tokens_per_image_follow_mtmds_resize(width, height, tokens):
    assert QWEN2VL.n_tokens(width, height) == tokens


def test_qwen2vl_f16_keeps_norms_and_biases_f32(tmp_path):
    config = dataclasses.replace(QWEN2VL, dtype="f16")
    _, tensors = _read(build_qwen2vl_projector(tmp_path / "f16.gguf", config, QWEN2VL_TEXT))
    f16, f32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
    for name in ("v.patch_embd.weight", "v.patch_embd.weight.1", "v.blk.0.attn_q.weight", "mm.0.weight"):
        assert tensors[name].tensor_type == f16, name
    for name in ("v.blk.0.ln1.weight", "v.blk.0.attn_q.bias", "v.post_ln.bias", "mm.2.bias"):
        assert tensors[name].tensor_type == f32, name


def test_same_seed_writes_identical_qwen2vl_projectors_and_another_seed_differs(tmp_path):
    a = build_qwen2vl_projector(tmp_path / "a.gguf", QWEN2VL, QWEN2VL_TEXT)
    b = build_qwen2vl_projector(tmp_path / "b.gguf", QWEN2VL, QWEN2VL_TEXT)
    c = build_qwen2vl_projector(tmp_path / "c.gguf", dataclasses.replace(QWEN2VL, seed=QWEN2VL.seed + 1), QWEN2VL_TEXT)
    assert a.read_bytes() == b.read_bytes()
    assert not np.array_equal(_read(a)[1]["mm.2.weight"].data, _read(c)[1]["mm.2.weight"].data)


@pytest.mark.parametrize(
    "change",
    [{"n_head": 3}, {"n_head": 8}, {"n_ff": QWEN2VL.n_embd}, {"n_layer": 0}, {"patch_size": 0}],
    ids=["heads-do-not-divide-width", "head-width-not-a-multiple-of-4", "square-ffn", "no-layers", "no-patch"],
)
def test_rejects_qwen2vl_shapes_clip_cannot_run(tmp_path, change):
    with pytest.raises(ValueError):
        build_qwen2vl_projector(tmp_path / "bad.gguf", dataclasses.replace(QWEN2VL, **change), QWEN2VL_TEXT)


def test_command_line_builds_a_qwen2vl_projector(tmp_path, capsys):
    out = tmp_path / "cli-qwen2vl.gguf"
    assert main(["qwen2vl-projector", str(out), "--dtype", "f16"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    fields, tensors = _read(out)
    assert fields["clip.projector_type"][1] == "qwen2vl_merger"
    assert tensors["mm.2.weight"].tensor_type == gguf.GGMLQuantizationType.F16


# --- the Qwen2.5-VL projector (clip.projector_type "qwen2.5vl_merger": Qwen2-VL's, with RMS norms,
# a gated SiLU FFN and windowed attention) ---

QWEN25VL = Qwen25VLProjectorConfig()


@pytest.fixture(scope="module")
def qwen25vl_projector(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    path = tmp_path_factory.mktemp("qwen25vl") / "qwen25vl-mmproj.gguf"
    return _read(build_qwen25vl_projector(path, QWEN25VL, QWEN2VL_TEXT))


def test_qwen25vl_header_declares_the_merger_silu_and_the_window_pattern(qwen25vl_projector):
    fields, _ = qwen25vl_projector
    assert fields["general.architecture"][1] == "clip"
    assert fields["clip.has_vision_encoder"][1] is True
    assert fields["clip.projector_type"][1] == "qwen2.5vl_merger"
    assert fields["clip.use_silu"][1] is True and "clip.use_gelu" not in fields
    # clip.cpp refuses a qwen2.5vl_merger file without it
    assert fields["clip.vision.n_wa_pattern"] == ([gguf.GGUFValueType.UINT32], QWEN25VL.n_wa_pattern)
    for absent in ("clip.vision.spatial_merge_size", "clip.vision.wa_layer_indexes", "clip.vision.window_size"):
        assert absent not in fields


def test_qwen25vl_hparams_are_uint32_as_the_loader_reads_them(qwen25vl_projector):
    fields, _ = qwen25vl_projector
    expected = {
        "clip.vision.image_size": QWEN25VL.image_size,
        "clip.vision.patch_size": QWEN25VL.patch_size,
        "clip.vision.embedding_length": QWEN25VL.n_embd,
        "clip.vision.feed_forward_length": QWEN25VL.n_ff,
        "clip.vision.block_count": QWEN25VL.n_layer,
        "clip.vision.attention.head_count": QWEN25VL.n_head,
        # clip.cpp reshapes the merged embeddings to this width: it must be the merger's output width
        "clip.vision.projection_dim": QWEN2VL_TEXT.n_embd,
    }
    for key, value in expected.items():
        types, content = fields[key]
        assert types == [gguf.GGUFValueType.UINT32], key
        assert content == value, key
    assert fields["clip.vision.attention.layer_norm_epsilon"][1] == pytest.approx(QWEN25VL.layer_norm_eps)
    assert fields["clip.vision.image_std"][1] == pytest.approx(list(QWEN25VL.image_std))


def test_qwen25vl_tensors_have_rms_norms_a_gated_ffn_and_the_merger(qwen25vl_projector):
    _, tensors = qwen25vl_projector
    c, merged = QWEN25VL, 4 * QWEN25VL.n_embd
    shapes = {  # ggml ne order, as clip.cpp sees them
        "v.patch_embd.weight": [c.patch_size, c.patch_size, 3, c.n_embd],
        "v.patch_embd.weight.1": [c.patch_size, c.patch_size, 3, c.n_embd],
        "v.post_ln.weight": [c.n_embd],  # RMS norm: no bias
        "mm.0.weight": [merged, merged],
        "mm.0.bias": [merged],
        "mm.2.weight": [merged, QWEN2VL_TEXT.n_embd],
        "mm.2.bias": [QWEN2VL_TEXT.n_embd],
    }
    for i in range(c.n_layer):
        shapes[f"v.blk.{i}.ln1.weight"] = [c.n_embd]
        shapes[f"v.blk.{i}.ln2.weight"] = [c.n_embd]
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            shapes[f"v.blk.{i}.{name}.weight"] = [c.n_embd, c.n_embd]
            shapes[f"v.blk.{i}.{name}.bias"] = [c.n_embd]
        for name in ("ffn_gate", "ffn_up"):
            shapes[f"v.blk.{i}.{name}.weight"] = [c.n_embd, c.n_ff]
            shapes[f"v.blk.{i}.{name}.bias"] = [c.n_ff]
        shapes[f"v.blk.{i}.ffn_down.weight"] = [c.n_ff, c.n_embd]
        shapes[f"v.blk.{i}.ffn_down.bias"] = [c.n_embd]
    assert set(tensors) == set(shapes)
    for name, shape in shapes.items():
        assert tensors[name].shape.tolist() == shape, name


def test_qwen25vl_default_has_a_windowed_block_then_a_full_one():
    assert QWEN25VL.n_layer == 2 and QWEN25VL.full_attention_blocks == (1,)
    assert Qwen25VLProjectorConfig(n_layer=8, n_wa_pattern=4).full_attention_blocks == (3, 7)
    assert QWEN25VL.window_tokens == 14  # 112 pixels / (2 * patch_size 4)
    assert Qwen25VLProjectorConfig(patch_size=14).window_tokens == 4  # Qwen2.5-VL's own


def test_qwen25vl_images_are_tokenized_as_qwen2vl_ones():
    for width, height in ((40, 30), (120, 16), (1, 1), (1000, 1000)):
        assert QWEN25VL.n_tokens(width, height) == QWEN2VL.n_tokens(width, height)


def test_qwen25vl_window_pattern_changes_the_header_only(tmp_path):
    a = build_qwen25vl_projector(tmp_path / "a.gguf", QWEN25VL, QWEN2VL_TEXT)
    b = build_qwen25vl_projector(tmp_path / "b.gguf", dataclasses.replace(QWEN25VL, n_wa_pattern=3), QWEN2VL_TEXT)
    (fa, ta), (fb, tb) = _read(a), _read(b)
    assert fa["clip.vision.n_wa_pattern"][1] == 2 and fb["clip.vision.n_wa_pattern"][1] == 3
    assert set(ta) == set(tb)
    for name in ta:
        assert np.array_equal(ta[name].data, tb[name].data), name


def test_qwen25vl_projector_width_follows_the_text_model(tmp_path):
    text = Qwen2VLConfig(n_embd=96, n_head=4, n_head_kv=2, rope_sections=(4, 4, 4, 0))
    fields, tensors = _read(build_qwen25vl_projector(tmp_path / "wide.gguf", QWEN25VL, text))
    assert tensors["mm.2.weight"].shape.tolist() == [4 * QWEN25VL.n_embd, 96]
    assert fields["clip.vision.projection_dim"][1] == 96


def test_qwen25vl_f16_keeps_norms_and_biases_f32(tmp_path):
    config = dataclasses.replace(QWEN25VL, dtype="f16")
    _, tensors = _read(build_qwen25vl_projector(tmp_path / "f16.gguf", config, QWEN2VL_TEXT))
    f16, f32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
    for name in ("v.patch_embd.weight.1", "v.blk.0.ffn_gate.weight", "v.blk.1.attn_out.weight", "mm.2.weight"):
        assert tensors[name].tensor_type == f16, name
    for name in ("v.blk.0.ln1.weight", "v.blk.0.ffn_gate.bias", "v.post_ln.weight", "mm.0.bias"):
        assert tensors[name].tensor_type == f32, name


def test_same_seed_writes_identical_qwen25vl_projectors_and_another_seed_differs(tmp_path):
    a = build_qwen25vl_projector(tmp_path / "a.gguf", QWEN25VL, QWEN2VL_TEXT)
    b = build_qwen25vl_projector(tmp_path / "b.gguf", QWEN25VL, QWEN2VL_TEXT)
    c = build_qwen25vl_projector(tmp_path / "c.gguf", dataclasses.replace(QWEN25VL, seed=QWEN25VL.seed + 1),
                                 QWEN2VL_TEXT)
    assert a.read_bytes() == b.read_bytes()
    assert not np.array_equal(_read(a)[1]["mm.2.weight"].data, _read(c)[1]["mm.2.weight"].data)


@pytest.mark.parametrize(
    "change, message",
    [({"n_wa_pattern": 1}, "n_wa_pattern"), ({"n_wa_pattern": 0}, "n_wa_pattern"),
     ({"patch_size": 57}, "patch_size"), ({"n_head": 8}, "n_head"), ({"n_ff": QWEN25VL.n_embd}, "n_ff"),
     ({"n_layer": 0}, "positive")],
    ids=["every-block-full-aborts-clip", "no-windows", "patch-wider-than-half-a-window-hangs-clip",
         "head-width-not-a-multiple-of-4", "square-ffn", "no-layers"],
)
def test_rejects_qwen25vl_shapes_clip_cannot_run(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        build_qwen25vl_projector(tmp_path / "bad.gguf", dataclasses.replace(QWEN25VL, **change), QWEN2VL_TEXT)
    assert not (tmp_path / "bad.gguf").exists()


def test_command_line_builds_a_qwen25vl_projector(tmp_path, capsys):
    out = tmp_path / "cli-qwen25vl.gguf"
    assert main(["qwen25vl-projector", str(out), "--dtype", "f16", "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    fields, tensors = _read(out)
    assert fields["clip.projector_type"][1] == "qwen2.5vl_merger"
    assert tensors["v.blk.0.ffn_gate.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    with pytest.raises(SystemExit):
        main(["qwen25vl-projector", str(tmp_path / "bench.gguf"), "--preset", "bench"])
