"""The decoder builders write what llama.cpp's loader reads: the tokenizer copied from a
``ggml-vocab-*.gguf`` file, and the Qwen2-VL text model (arch "qwen2vl": the llama's blocks
with q/k/v biases and M-RoPE sections).

These tests check the files; llama.cpp loading and running the Qwen2-VL model is in
tests/native/test_media_mrope.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from allama.testing.model_builder import Qwen2VLConfig, _read_gguf_keys, build_llama, build_qwen2vl, main, vocab_dir

gguf = pytest.importorskip("gguf")

QWEN2VL = Qwen2VLConfig()
# gguf.GGUFReader needs some 20 s for a file with the Qwen2 vocabulary (150k tokens and merges):
# tests that read tensors build the model with the llama's 32k-token vocabulary instead.
SMALL_VOCAB = dataclasses.replace(QWEN2VL, vocab="llama-spm")


def _read(path: Path) -> tuple[dict, dict]:
    """(key -> (value types, value), tensor name -> ReaderTensor) of a GGUF file."""
    reader = gguf.GGUFReader(path)
    fields = {name: (field.types, field.contents()) for name, field in reader.fields.items()}
    return fields, {t.name: t for t in reader.tensors}


def _keys(path: Path) -> dict:
    """key -> (value type, element type, value) of a GGUF file, read quickly."""
    return {name: (main_type, sub_type, value) for name, value, main_type, sub_type in _read_gguf_keys(path)}


def test_tokenizer_keys_read_as_gguf_reader_reads_them():
    path = vocab_dir() / "ggml-vocab-llama-spm.gguf"  # strings, float and int arrays, numbers, flags
    reference = gguf.GGUFReader(path).fields
    keys = _read_gguf_keys(path, "tokenizer.")
    assert [name for name, *_ in keys] == [name for name in reference if name.startswith("tokenizer.")]
    for name, value, main_type, sub_type in keys:
        field = reference[name]
        assert main_type == field.types[0], name
        if main_type == gguf.GGUFValueType.ARRAY:
            assert sub_type == field.types[-1], name
        if isinstance(value, list) and value and isinstance(value[0], float):
            np.testing.assert_array_equal(np.float32(value), np.float32(field.contents()), err_msg=name)
        else:
            assert value == field.contents(), name


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    path = tmp_path / "not.gguf"
    path.write_bytes(b"GGML" + bytes(20))
    with pytest.raises(ValueError, match="not a GGUF file"):
        _read_gguf_keys(path)


def test_qwen2vl_header_has_the_arch_the_qwen2_tokenizer_and_mrope_sections(tmp_path):
    keys = _keys(build_qwen2vl(tmp_path / "qwen2vl.gguf", QWEN2VL))
    assert keys["general.architecture"][2] == "qwen2vl"
    assert keys["tokenizer.ggml.pre"][2] == "qwen2"
    assert len(keys["tokenizer.ggml.tokens"][2]) == 151936
    # llama.cpp reads exactly 4 sections, as an int array; they add up to head_dim / 2 pairs
    main_type, sub_type, sections = keys["qwen2vl.rope.dimension_sections"]
    assert (main_type, sub_type) == (gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)
    assert sections == [2, 3, 3, 0] and sum(sections) * 2 == QWEN2VL.head_dim
    assert keys["qwen2vl.rope.dimension_count"][2] == QWEN2VL.head_dim
    assert keys["qwen2vl.rope.freq_base"][2] == pytest.approx(1e6)
    assert keys["qwen2vl.embedding_length"][2] == QWEN2VL.n_embd


def test_qwen2vl_tensors_are_the_llamas_plus_f32_qkv_biases(tmp_path):
    c, kv_dim = SMALL_VOCAB, SMALL_VOCAB.head_dim * SMALL_VOCAB.n_head_kv
    _, tensors = _read(build_qwen2vl(tmp_path / "qwen2vl.gguf", c))
    _, llama_tensors = _read(build_llama(tmp_path / "llama.gguf", c)[0])
    biases = {f"blk.{i}.attn_{x}.bias": [n]
              for i in range(c.n_layer) for x, n in (("q", c.n_embd), ("k", kv_dim), ("v", kv_dim))}
    assert set(tensors) == set(llama_tensors) | set(biases)
    for name, shape in biases.items():
        assert tensors[name].shape.tolist() == shape, name
        assert tensors[name].tensor_type == gguf.GGMLQuantizationType.F32, name
    for name, tensor in llama_tensors.items():
        assert tensors[name].shape.tolist() == tensor.shape.tolist(), name
        assert tensors[name].tensor_type == gguf.GGMLQuantizationType.F32, name


def test_qwen2vl_f16_keeps_norms_and_biases_f32(tmp_path):
    _, tensors = _read(build_qwen2vl(tmp_path / "f16.gguf", dataclasses.replace(SMALL_VOCAB, dtype="f16")))
    f16, f32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight", "output.weight"):
        assert tensors[name].tensor_type == f16, name
    for name in ("blk.0.attn_q.bias", "blk.0.attn_norm.weight", "output_norm.weight"):
        assert tensors[name].tensor_type == f32, name


@pytest.mark.parametrize(
    "change",
    [{"rope_sections": (2, 3, 2, 0)}, {"rope_sections": (0, 4, 4, 0)}, {"rope_sections": (2, 3, 3)},
     {"n_head": 3}],
    ids=["sections-do-not-cover-head", "no-time-section", "three-sections", "heads-do-not-divide-width"],
)
def test_rejects_qwen2vl_shapes_llama_cpp_cannot_run(tmp_path, change):
    with pytest.raises(ValueError):
        build_qwen2vl(tmp_path / "bad.gguf", dataclasses.replace(QWEN2VL, **change))


def test_command_line_builds_a_qwen2vl_model_and_refuses_a_preset(tmp_path, capsys):
    out = tmp_path / "cli-qwen2vl.gguf"
    assert main(["qwen2vl", str(out), "--seed", "7"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert _keys(out)["general.architecture"][2] == "qwen2vl"
    with pytest.raises(SystemExit):
        main(["qwen2vl", str(tmp_path / "bench.gguf"), "--preset", "bench"])
