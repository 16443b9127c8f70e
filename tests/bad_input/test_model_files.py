"""Corrupt, truncated and inconsistent GGUF files, and paths that are not model files: each
is a clear error at load (ModelLoadError, FileNotFoundError), never an abort.

The files are the tiny llama with bytes patched where the gguf package's reader says each
header field, metadata entry and tensor description lies."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import pytest

from . import scenarios
from .runner import expect_raises, expect_returns, run_case

U64_MAX = (1 << 64) - 1


class Layout:
    """Byte offsets of a GGUF file's parts, from gguf.GGUFReader: for a metadata key, its
    parts are [key length, key, value type, value...] (a string value: [length, bytes]; an
    array: [element type, count, elements...]); for a tensor, [name length, name, n_dims,
    dims, type, offset]."""

    def __init__(self, path: Path) -> None:
        reader = gguf.GGUFReader(path)
        base = reader.data.ctypes.data
        self.kv = {name: [p.ctypes.data - base for p in f.parts] for name, f in reader.fields.items()}
        self.tensor = {t.name: [p.ctypes.data - base for p in t.field.parts] for t in reader.tensors}
        self.tensor_names = [t.name for t in reader.tensors]
        self.data_offset = reader.data_offset


Mutation = Callable[[bytearray, Layout], bytes | bytearray]


def u32(where: Callable[[Layout], int], value: int) -> Mutation:
    def mutate(buf: bytearray, layout: Layout) -> bytearray:
        struct.pack_into("<I", buf, where(layout), value & 0xFFFFFFFF)
        return buf
    return mutate


def u64(where: Callable[[Layout], int], value: int) -> Mutation:
    def mutate(buf: bytearray, layout: Layout) -> bytearray:
        struct.pack_into("<Q", buf, where(layout), value & U64_MAX)
        return buf
    return mutate


def f32(where: Callable[[Layout], int], value: float) -> Mutation:
    def mutate(buf: bytearray, layout: Layout) -> bytearray:
        struct.pack_into("<f", buf, where(layout), value)
        return buf
    return mutate


def text(where: Callable[[Layout], int], new: bytes) -> Mutation:
    """Overwrites bytes (same length: the layout stays valid)."""
    def mutate(buf: bytearray, layout: Layout) -> bytearray:
        at = where(layout)
        buf[at:at + len(new)] = new
        return buf
    return mutate


def truncate(where: Callable[[Layout], int]) -> Mutation:
    return lambda buf, layout: buf[:where(layout)]


def kv(key: str, part: int) -> Callable[[Layout], int]:
    return lambda layout: layout.kv[key][part]


def tensor(name: str, part: int, extra: int = 0) -> Callable[[Layout], int]:
    return lambda layout: layout.tensor[name][part] + extra


HEADER_VERSION, TENSOR_COUNT, KV_COUNT = (lambda _: 4), (lambda _: 8), (lambda _: 16)
ARCH = "general.architecture"
TOKENS = "tokenizer.ggml.tokens"
EMBD = "token_embd.weight"
NORM = "blk.0.attn_norm.weight"
OUTPUT = "output.weight"
T = gguf.GGMLQuantizationType

def case(name: str, mutate: Mutation, expected: tuple[str, ...] | None, marks: Any = ()) -> Any:
    """A file made by `mutate`, and the exception expected (None: it loads and decodes)."""
    return pytest.param(mutate, expected, id=name, marks=marks)


CASES = [
    # header
    case("empty-file", lambda buf, _: b"", ("ModelLoadError",)),
    case("magic-only", lambda buf, _: buf[:4], ("ModelLoadError",)),
    case("bad-magic", text(lambda _: 0, b"GGML"), ("ModelLoadError", "not a GGUF file")),
    case("version-0", u32(HEADER_VERSION, 0), ("ModelLoadError",)),
    case("version-1", u32(HEADER_VERSION, 1), ("ModelLoadError",)),
    case("version-4", u32(HEADER_VERSION, 4), ("ModelLoadError",)),
    case("version-max", u32(HEADER_VERSION, 0xFFFFFFFF), ("ModelLoadError",)),
    case("tensor-count-0", u64(TENSOR_COUNT, 0), ("ModelLoadError",)),
    case("tensor-count-plus-1", u64(TENSOR_COUNT, 22), ("ModelLoadError",)),
    case("tensor-count-2^40", u64(TENSOR_COUNT, 1 << 40), ("ModelLoadError",)),
    case("tensor-count-i64-max", u64(TENSOR_COUNT, (1 << 63) - 1), ("ModelLoadError",)),
    case("tensor-count-u64-max", u64(TENSOR_COUNT, U64_MAX), ("ModelLoadError",)),
    case("kv-count-0", u64(KV_COUNT, 0), ("ModelLoadError",)),
    case("kv-count-minus-1", u64(KV_COUNT, 25), ("ModelLoadError",)),
    case("kv-count-plus-1", u64(KV_COUNT, 27), ("ModelLoadError",)),
    case("kv-count-2^40", u64(KV_COUNT, 1 << 40), ("ModelLoadError",)),
    case("kv-count-u64-max", u64(KV_COUNT, U64_MAX), ("ModelLoadError",)),
    # metadata entries
    case("key-length-0", u64(kv(ARCH, 0), 0), ("ModelLoadError",)),
    case("key-length-past-end", u64(kv(ARCH, 0), 1 << 40), ("ModelLoadError",)),
    case("key-length-u64-max", u64(kv(ARCH, 0), U64_MAX), ("ModelLoadError",)),
    case("value-type-unknown", u32(kv(ARCH, 2), 99), ("ModelLoadError",)),
    case("value-type-string-read-as-u32", u32(kv(ARCH, 2), gguf.GGUFValueType.UINT32), ("ModelLoadError",)),
    case("string-length-past-end", u64(kv(ARCH, 3), 1 << 40), ("ModelLoadError",)),
    case("string-length-u64-max", u64(kv(ARCH, 3), U64_MAX), ("ModelLoadError",)),
    case("architecture-unknown", text(kv(ARCH, 4), b"xyzzy"), ("ModelLoadError", "xyzzy")),
    case("architecture-key-missing", text(kv(ARCH, 1), b"general.architectur_"), ("ModelLoadError",)),
    case("duplicate-key", text(kv("general.file_type", 1), b"llama.block_count"), ("ModelLoadError",)),
    case("array-element-type-unknown", u32(kv(TOKENS, 3), 99), ("ModelLoadError",)),
    case("array-element-type-array", u32(kv(TOKENS, 3), gguf.GGUFValueType.ARRAY), ("ModelLoadError",)),
    case("array-count-past-end", u64(kv(TOKENS, 4), 1 << 40), ("ModelLoadError",)),
    case("array-count-u64-max", u64(kv(TOKENS, 4), U64_MAX), ("ModelLoadError",)),
    case("array-count-0", u64(kv(TOKENS, 4), 0), ("ModelLoadError",)),
    case("token-text-length-past-end", u64(kv(TOKENS, 5), 1 << 40), ("ModelLoadError",)),
    case("tokenizer-model-unknown", text(kv("tokenizer.ggml.model", 4), b"xyzzy"), ("ModelLoadError",)),
    case("token-type-unknown", u32(kv("tokenizer.ggml.token_type", 5), 99), None),
    case("token-score-nan", f32(kv("tokenizer.ggml.scores", 5), math.nan), None),
    # llama.cpp warns and keeps its default id for a special token out of range
    case("bos-token-out-of-range", u32(kv("tokenizer.ggml.bos_token_id", 3), 10**6), None),
    case("eos-token-out-of-range", u32(kv("tokenizer.ggml.eos_token_id", 3), 32000), None),
    case("unknown-token-out-of-range", u32(kv("tokenizer.ggml.unknown_token_id", 3), 10**6), None),
    case("add-bos-not-a-bool", text(kv("tokenizer.ggml.add_bos_token", 3), b"\x07"), None),
    # hyperparameters that disagree with the tensors, or make no sense
    case("block-count-0", u32(kv("llama.block_count", 3), 0), ("ModelLoadError",)),
    case("block-count-more-than-tensors", u32(kv("llama.block_count", 3), 3), ("ModelLoadError",)),
    case("block-count-huge", u32(kv("llama.block_count", 3), 1 << 30), ("ModelLoadError",)),
    case("embedding-length-0", u32(kv("llama.embedding_length", 3), 0), ("ModelLoadError",)),
    case("embedding-length-mismatch", u32(kv("llama.embedding_length", 3), 65), ("ModelLoadError",)),
    case("feed-forward-length-mismatch", u32(kv("llama.feed_forward_length", 3), 100), ("ModelLoadError",)),
    case("head-count-0", u32(kv("llama.attention.head_count", 3), 0), ("ModelLoadError",)),
    case("head-count-not-a-divisor", u32(kv("llama.attention.head_count", 3), 3), ("ModelLoadError",)),
    case("head-count-kv-0", u32(kv("llama.attention.head_count_kv", 3), 0), ("ModelLoadError",)),
    case("head-count-kv-not-a-divisor", u32(kv("llama.attention.head_count_kv", 3), 3), ("ModelLoadError",)),
    case("rope-dimension-0", u32(kv("llama.rope.dimension_count", 3), 0), ("ModelLoadError",)),
    case("rope-dimension-huge", u32(kv("llama.rope.dimension_count", 3), 1 << 20), ("ModelLoadError",)),
    case("context-length-0", u32(kv("llama.context_length", 3), 0), None),
    case("rope-freq-base-nan", f32(kv("llama.rope.freq_base", 3), math.nan), None),  # loads; the logits are NaN
    case("rms-eps-nan", f32(kv("llama.attention.layer_norm_rms_epsilon", 3), math.nan), ("ModelLoadError",)),
    case("rms-eps-negative", f32(kv("llama.attention.layer_norm_rms_epsilon", 3), -1.0), ("ModelLoadError",)),
    case("vocab-size-mismatch", u32(kv("llama.vocab_size", 3), 100), None),  # llama.cpp counts the tokens array
    case("alignment-0", text(kv("general.file_type", 1), b"general.alignment"), ("ModelLoadError",)),
    # tensor descriptions
    case("tensor-name-length-0", u64(tensor(EMBD, 0), 0), ("ModelLoadError",)),
    case("tensor-name-length-past-end", u64(tensor(EMBD, 0), 1 << 40), ("ModelLoadError",)),
    case("tensor-name-unknown", text(tensor(EMBD, 1), b"token_xxxx.weight"), ("ModelLoadError",)),
    case("tensor-name-duplicate", text(tensor("blk.1.attn_q.weight", 1), b"blk.0.attn_q.weight"), ("ModelLoadError",)),
    case("tensor-n-dims-0", u32(tensor(EMBD, 2), 0), ("ModelLoadError",)),
    case("tensor-n-dims-5", u32(tensor(EMBD, 2), 5), ("ModelLoadError",)),
    case("tensor-n-dims-u32-max", u32(tensor(EMBD, 2), 0xFFFFFFFF), ("ModelLoadError",)),
    case("tensor-dim-0", u64(tensor(EMBD, 3), 0), ("ModelLoadError",)),
    case("tensor-dim-huge", u64(tensor(EMBD, 3), 1 << 40), ("ModelLoadError",)),
    case("tensor-dim-negative", u64(tensor(EMBD, 3), U64_MAX), ("ModelLoadError",)),
    case("tensor-dims-overflow", u64(tensor(EMBD, 3, 8), 1 << 62), ("ModelLoadError",)),
    case("tensor-dims-swapped", lambda buf, lo: u64(tensor(EMBD, 3, 8), 64)(u64(tensor(EMBD, 3), 32000)(buf, lo), lo),
     ("ModelLoadError",)),
    case("tensor-dim-wrong", u64(tensor(NORM, 3), 32), ("ModelLoadError",)),
    case("tensor-type-unknown", u32(tensor(NORM, 4), 9999), ("ModelLoadError",)),
    case("tensor-type-removed", u32(tensor(NORM, 4), 4), ("ModelLoadError",)),  # Q4_2, no longer in ggml
    case("tensor-type-f16-for-f32", u32(tensor(NORM, 4), T.F16), ("ModelLoadError",)),
    case("tensor-type-block-misfit", u32(tensor(NORM, 4), T.Q4_K), ("ModelLoadError",)),  # 64 wide, blocks of 256
    case("tensor-type-i32", u32(tensor(NORM, 4), T.I32), ("ModelLoadError",)),
    case("tensor-type-f64", u32(tensor(NORM, 4), T.F64), ("ModelLoadError",)),
    case("tensor-offset-past-end", u64(tensor(OUTPUT, 5), 1 << 40), ("ModelLoadError",)),
    case("tensor-offset-u64-max", u64(tensor(OUTPUT, 5), U64_MAX), ("ModelLoadError",)),
    case("tensor-offset-misaligned", lambda buf, lo: u64(tensor(NORM, 5), struct.unpack_from(
        "<Q", buf, lo.tensor[NORM][5])[0] + 1)(buf, lo), ("ModelLoadError",)),
    case("tensor-data-past-end", lambda buf, lo: u64(tensor(OUTPUT, 5), struct.unpack_from(
        "<Q", buf, lo.tensor[OUTPUT][5])[0] + 64)(buf, lo), ("ModelLoadError",)),
    case("tensor-offsets-overlap", lambda buf, lo: u64(tensor("blk.0.attn_k.weight", 5), struct.unpack_from(
        "<Q", buf, lo.tensor["blk.0.attn_q.weight"][5])[0])(buf, lo), ("ModelLoadError",)),
    # truncations
    case("truncated-after-header", truncate(lambda _: 24), ("ModelLoadError",)),
    case("truncated-in-a-key", truncate(lambda lo: lo.kv[ARCH][1] + 5), ("ModelLoadError",)),
    case("truncated-in-the-vocabulary", truncate(lambda lo: lo.kv[TOKENS][5] + 50000), ("ModelLoadError",)),
    case("truncated-before-tensor-infos", truncate(lambda lo: lo.tensor[EMBD][0]), ("ModelLoadError",)),
    case("truncated-in-tensor-infos", truncate(lambda lo: lo.tensor[NORM][3] + 4), ("ModelLoadError",)),
    case("truncated-at-data", truncate(lambda lo: lo.data_offset), ("ModelLoadError",)),
    case("truncated-in-data", lambda buf, lo: buf[:lo.data_offset + (len(buf) - lo.data_offset) // 2],
         ("ModelLoadError",)),
    case("truncated-last-byte", lambda buf, _: buf[:-1], ("ModelLoadError",)),
    case("trailing-garbage", lambda buf, _: buf + b"\xde\xad\xbe\xef" * 1000, None),
]


@pytest.fixture(scope="module")
def original(chat_model: str) -> tuple[bytes, Layout]:
    return Path(chat_model).read_bytes(), Layout(Path(chat_model))


@pytest.mark.parametrize("mutate, expected", CASES)
def test_a_corrupt_gguf_file_is_a_load_error(original, tmp_path, mutate, expected):
    data, layout = original
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(bytes(mutate(bytearray(data), layout)))
    try:
        out = run_case(scenarios.load, str(path), {})
    finally:
        path.unlink()
    if expected is None:
        assert expect_returns(out)["finish_reasons"] == ["length"]
    else:
        expect_raises(out, *expected)


def test_a_file_that_is_not_gguf_is_a_load_error(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("just some notes\n" * 100)
    expect_raises(run_case(scenarios.load, str(path), {}), "ModelLoadError", "not a GGUF file")


@pytest.mark.parametrize("path, expected", [
    pytest.param("{tmp}/missing.gguf", ("FileNotFoundError", "missing.gguf"), id="missing"),
    pytest.param("{tmp}", ("ModelLoadError", "is a directory"), id="directory"),
    pytest.param("", ("FileNotFoundError",), id="empty-path"),
    pytest.param("{tmp}/a\0b.gguf", ("FileNotFoundError", "\\x00"), id="nul-in-path"),
    pytest.param("/dev/null", ("ModelLoadError",), id="dev-null"),
])
def test_a_path_that_is_no_model_file_is_a_clear_error(tmp_path, path, expected):
    expect_raises(run_case(scenarios.load, path.format(tmp=tmp_path), {}), *expected)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    expect_raises(run_case(scenarios.load, str(fifo), {}, timeout=5), "ModelLoadError")
