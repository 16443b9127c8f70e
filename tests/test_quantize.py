"""allama.quantize (and the low-level llama_model_quantize): quantized fixtures from the
random models, the types really written, and clear errors for bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import allama
from allama import _native, llama_cpp
from allama.errors import ModelLoadError, QuantizationError
from allama.quantization import ftype_name
from allama.testing.model_builder import LlamaConfig, build_llama
from tests.native.isolated import run_isolated

# Rows of 256 (QK_K) so that the K-quants apply instead of llama.cpp's fallback types.
WIDE = LlamaConfig(n_embd=256, n_ff=512, n_layer=1, n_head=4, n_head_kv=2)


@pytest.fixture(scope="module")
def wide_path(models_dir: Path) -> Path:
    return build_llama(models_dir / "llama-wide-f32.gguf", WIDE)[0]


def tensor_types(path: Path) -> dict[str, str]:
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}


def greedy(path: Path, n: int = 8) -> list[int]:
    model = _native.Model.load(str(path))
    ctx = _native.Context(model)
    vocab = _native.Vocab(model)
    tokens = vocab.tokenize("Once upon a time", True, False)
    batch = _native.Batch(64)
    batch.add_tokens(tokens, 0, 0, True)
    ctx.decode(batch)
    out = []
    for pos in range(len(tokens), len(tokens) + n):
        out.append(int(np.argmax(ctx.logits(-1))))
        batch.clear()
        batch.add(out[-1], pos, 0, True)
        ctx.decode(batch)
    return out


@pytest.mark.parametrize("ftype, weight_type", [("Q8_0", "Q8_0"), ("Q4_K_M", "Q4_K"), ("Q4_0", "Q4_0"),
                                                ("q5_k_m", "Q5_K"), ("F16", "F16")])
def test_quantize_writes_the_type_and_the_model_runs(wide_path, tmp_path, ftype, weight_type):
    out = allama.quantize(wide_path, tmp_path / f"m-{ftype}.gguf", ftype)
    assert out == tmp_path / f"m-{ftype}.gguf"
    types = tensor_types(out)
    assert types["blk.0.attn_q.weight"] == weight_type
    assert types["blk.0.attn_norm.weight"] == "F32"  # 1-d tensors stay F32
    assert out.stat().st_size < wide_path.stat().st_size
    model = _native.Model.load(str(out))
    assert ftype_name(model.ftype) == ftype.upper()
    assert len(greedy(out)) == 8


def test_narrow_rows_take_a_fallback_type(llama_f32_path, tmp_path):
    # 64-wide rows cannot hold Q4_K's 256-value blocks: llama.cpp picks another type, as llama-quantize does
    out = allama.quantize(llama_f32_path, tmp_path / "narrow.gguf", "Q4_K_M")
    assert tensor_types(out)["blk.0.attn_q.weight"] not in ("Q4_K", "F32")
    assert len(greedy(out)) == 8


def test_quantized_greedy_stays_close_to_f32(wide_path, tmp_path):
    # Q8_0 keeps random-weight logits close: the first greedy token matches F32's.
    out = allama.quantize(wide_path, tmp_path / "q8.gguf", "Q8_0")
    assert greedy(out, 1) == greedy(wide_path, 1)


def test_requantizing_needs_allow_requantize(wide_path, tmp_path):
    q8 = allama.quantize(wide_path, tmp_path / "q8.gguf", "Q8_0")
    with pytest.raises(QuantizationError, match="Q4_0"):
        allama.quantize(q8, tmp_path / "q4.gguf", "Q4_0")
    out = allama.quantize(q8, tmp_path / "q4.gguf", "Q4_0", allow_requantize=True)
    assert tensor_types(out)["blk.0.attn_q.weight"] == "Q4_0"


def test_unknown_types_are_value_errors(wide_path, tmp_path):
    with pytest.raises(ValueError, match="unknown quantization type 'Q9_9'.*Q4_K_M"):
        allama.quantize(wide_path, tmp_path / "x.gguf", "Q9_9")
    with pytest.raises(ValueError, match="unknown llama_ftype value 99"):
        allama.quantize(wide_path, tmp_path / "x.gguf", 99)
    with pytest.raises(TypeError):
        allama.quantize(wide_path, tmp_path / "x.gguf", 4.0)
    assert not (tmp_path / "x.gguf").exists()


def test_missing_and_non_gguf_sources(tmp_path):
    with pytest.raises(FileNotFoundError):
        allama.quantize(tmp_path / "missing.gguf", tmp_path / "out.gguf", "Q8_0")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        allama.quantize(junk, tmp_path / "out.gguf", "Q8_0")


def test_bad_destinations(wide_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="directory does not exist"):
        allama.quantize(wide_path, tmp_path / "no" / "such" / "dir.gguf", "Q8_0")
    with pytest.raises(IsADirectoryError):
        allama.quantize(wide_path, tmp_path, "Q8_0")
    with pytest.raises(ValueError, match="dst must differ from src"):
        allama.quantize(wide_path, wide_path, "Q8_0")
    # /proc refuses new files even to root: llama.cpp's own error comes back
    with pytest.raises((PermissionError, QuantizationError)):
        allama.quantize(wide_path, Path("/proc/allama-quantized.gguf"), "Q8_0")


def test_truncated_source_is_an_error_not_a_crash(wide_path, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(wide_path.read_bytes()[: os.path.getsize(wide_path) // 3])
    outcome = run_isolated(f"""
        import allama
        allama.quantize({str(cut)!r}, {str(tmp_path / 'out.gguf')!r}, "Q4_K_M")
    """)
    assert outcome.is_a("QuantizationError") or outcome.is_a("ModelLoadError"), outcome


def test_low_level_llama_model_quantize(wide_path, tmp_path):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    assert llama_cpp.llama_model_quantize(str(wide_path).encode(), str(tmp_path / "ll.gguf").encode(), params) == 0
    assert tensor_types(tmp_path / "ll.gguf")["blk.0.attn_q.weight"] == "Q8_0"
    params.ftype = 9999
    assert llama_cpp.llama_model_quantize(str(wide_path), str(tmp_path / "bad.gguf"), params) != 0
    with pytest.raises(TypeError, match="quantize params"):
        llama_cpp.llama_model_quantize(str(wide_path), str(tmp_path / "bad.gguf"), None)

