"""Build small GGUF models with seeded random weights, for tests, demos and benchmarks.

Nothing can be downloaded from model hubs in CI, so tests make their own models:
a llama-architecture causal LM (grouped-query attention, SwiGLU), its Qwen2-VL
twin (q/k/v biases, M-RoPE) and a BERT encoder, each with the tokenizer of one of
llama.cpp's ``ggml-vocab-*.gguf`` files, and multimodal projectors (mmproj) that
feed images or audio to the llama, or images to the Qwen2-VL model (Qwen2-VL's
projector and Qwen2.5-VL's: llama.cpp runs Qwen2.5-VL's text side as arch qwen2vl too).
Random weights prove only self-consistency; ``tests/oracle`` keeps an
independent NumPy forward pass of the llama architecture to check against.
Other architectures (Qwen2, Qwen3, Gemma 3, Phi-3, Qwen3-MoE, LFM2, Mamba) are built by
``allama.testing.architectures`` with this module's helpers.

Needs the ``gguf`` package matching the llama.cpp tree (install it with
``pip install ./vendor/llama.cpp/gguf-py``).

Command line::

    python -m allama.testing.model_builder llama OUT.gguf [--preset tiny|bench] [--dtype f32|f16]
    python -m allama.testing.model_builder qwen2vl OUT.gguf [--dtype f32|f16]
    python -m allama.testing.model_builder qwen2vl-projector OUT.gguf [--dtype f32|f16]
    python -m allama.testing.model_builder qwen25vl-projector OUT.gguf [--dtype f32|f16]
    python -m allama.testing.model_builder bert OUT.gguf
    python -m allama.testing.model_builder projector OUT.gguf [--preset tiny|bench]
    python -m allama.testing.model_builder audio-projector OUT.gguf [--preset tiny|bench]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LlamaConfig",
    "Qwen2VLConfig",
    "BertConfig",
    "ProjectorConfig",
    "Qwen2VLProjectorConfig",
    "Qwen25VLProjectorConfig",
    "AudioProjectorConfig",
    "LLAMA_PRESETS",
    "vocab_dir",
    "build_llama",
    "build_qwen2vl",
    "build_bert",
    "build_projector",
    "build_qwen2vl_projector",
    "build_qwen25vl_projector",
    "build_audio_projector",
    "build_lora",
    "LORA_TARGETS",
]


def vocab_dir() -> Path:
    """The folder of llama.cpp's ``ggml-vocab-*.gguf`` files (vendor/llama.cpp/models)."""
    env = os.environ.get("ALLAMA_LLAMA_CPP_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "vendor" / "llama.cpp"
    path = root / "models"
    if not path.is_dir():
        raise FileNotFoundError(
            f"no llama.cpp vocab files at {path}: run `python vendor/fetch_llama_cpp.py` "
            "or set ALLAMA_LLAMA_CPP_DIR"
        )
    return path


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Shape of a llama-architecture model; the vocabulary comes from ``vocab``."""

    vocab: str = "llama-spm"
    n_embd: int = 64
    n_ff: int = 128
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ctx_train: int = 4096
    rope_freq_base: float = 10000.0
    rms_norm_eps: float = 1e-5
    dtype: str = "f32"  # f32 or f16 for the matrices; norms stay f32
    seed: int = 1234
    chat_template: str | None = None

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


LLAMA_PRESETS: dict[str, LlamaConfig] = {
    "tiny": LlamaConfig(),
    # The engine benchmark model: about 125M parameters.
    "bench": LlamaConfig(n_embd=768, n_ff=2048, n_layer=12, n_head=12, n_head_kv=4, dtype="f16"),
    # The engine-overhead benchmark model: 4 layers of 128, so fast that the engine's own work shows.
    "overhead": LlamaConfig(n_embd=128, n_ff=512, n_layer=4, n_head=4, n_head_kv=4, dtype="f16"),
}


@dataclasses.dataclass(frozen=True)
class Qwen2VLConfig(LlamaConfig):
    """Shape of a Qwen2-VL text model (llama.cpp arch "qwen2vl"): the llama's blocks with
    biases on the q/k/v projections, and M-RoPE.

    M-RoPE splits each head's head_dim / 2 rotary pairs into sections turned by the time,
    height and width positions (and a fourth, unused by Qwen2-VL); Qwen2-VL's 16:24:24 of 64
    pairs becomes 2:3:3 of the tiny model's 8.
    """

    vocab: str = "qwen2"
    rope_freq_base: float = 1000000.0
    rms_norm_eps: float = 1e-6
    seed: int = 5678
    rope_sections: tuple[int, int, int, int] = (2, 3, 3, 0)


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Shape of a BERT encoder; the vocabulary comes from ``vocab``."""

    vocab: str = "bert-bge"
    n_embd: int = 64
    n_ff: int = 128
    n_layer: int = 2
    n_head: int = 4
    n_ctx_train: int = 512
    layer_norm_eps: float = 1e-12
    pooling_type: int = 1  # mean; 4 (rank) makes a reranker with a classification head
    dtype: str = "f32"
    seed: int = 4321


@dataclasses.dataclass(frozen=True)
class ProjectorConfig:
    """Shape of a LLaVA-style mmproj: a CLIP ViT image encoder and a two-layer MLP
    projector (clip.projector_type "mlp") into the text model's embedding width.

    mtmd fits every image into image_size x image_size (bicubic, aspect kept, padded with
    LLaVA's grey), normalises it with image_mean/image_std, and yields one embedding per
    patch. As in LLaVA, the encoder's
    output is taken before its last block, so n_layer=2 runs one block.
    """

    image_size: int = 32
    patch_size: int = 8
    n_embd: int = 32
    n_ff: int = 48  # must differ from n_embd: see build_projector
    n_layer: int = 2
    n_head: int = 4
    layer_norm_eps: float = 1e-5
    # OpenAI CLIP's normalisation, as LLaVA uses it
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    dtype: str = "f32"  # f32 or f16 for the matrices; norms, biases and positions stay f32
    seed: int = 2468

    @property
    def n_patches(self) -> int:
        """Image embeddings (tokens) one image yields: the patch grid of the resized image."""
        return (self.image_size // self.patch_size) ** 2


@dataclasses.dataclass(frozen=True)
class Qwen2VLProjectorConfig:
    """Shape of a Qwen2-VL mmproj (clip.projector_type "qwen2vl_merger"): a ViT with 2D M-RoPE
    (no learned positions), a patch embedding split into the two frames of Qwen2-VL's temporal
    patch, and a merger: layer norm, then a two-layer GELU MLP over each 2x2 group of patches
    into the text model's embedding width.

    mtmd keeps an image's size, rounded to multiples of 2 * patch_size, scaled up to at least 8
    and down to at most 4096 tokens; each 2x2 group of patches is one token (embedding), and
    the image takes max(columns, rows) M-RoPE positions in the text.
    """

    patch_size: int = 4
    image_size: int = 32  # nominal only: mtmd sizes each image itself
    n_embd: int = 16
    n_ff: int = 32  # must differ from n_embd: see build_qwen2vl_projector
    n_layer: int = 1
    n_head: int = 2
    layer_norm_eps: float = 1e-6
    # OpenAI CLIP's normalisation, as Qwen2-VL uses it
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    dtype: str = "f32"  # f32 or f16 for the matrices; norms and biases stay f32
    seed: int = 8642

    def n_tokens(self, width: int, height: int) -> tuple[int, int]:
        """(columns, rows) of tokens for an image of width x height pixels, sized as mtmd sizes it
        (tools/mtmd/mtmd-image.cpp, calc_size_preserved_ratio: float32, halves rounded up)."""
        f32 = np.float32
        align = 2 * self.patch_size
        min_pixels, max_pixels = 8 * align * align, 4096 * align * align

        def aligned(x: np.float32, rounding: Any) -> int:
            return int(rounding(f32(x) / f32(align))) * align

        def round_half_up(x: np.float32) -> np.float32:
            return np.floor(x + f32(0.5))

        w = max(align, aligned(f32(width), round_half_up))
        h = max(align, aligned(f32(height), round_half_up))
        if w * h > max_pixels:
            beta = np.sqrt(f32(height) * f32(width) / f32(max_pixels))
            w = max(align, aligned(f32(width) / beta, np.floor))
            h = max(align, aligned(f32(height) / beta, np.floor))
        elif w * h < min_pixels:
            beta = np.sqrt(f32(min_pixels) / (f32(height) * f32(width)))
            w = aligned(f32(width) * beta, np.ceil)
            h = aligned(f32(height) * beta, np.ceil)
        return w // align, h // align


# clip.cpp's Qwen2.5-VL attention window, in pixels of the resized image (not read from the file)
QWEN25VL_WINDOW_PIXELS = 112


@dataclasses.dataclass(frozen=True)
class Qwen25VLProjectorConfig(Qwen2VLProjectorConfig):
    """Shape of a Qwen2.5-VL mmproj (clip.projector_type "qwen2.5vl_merger"): Qwen2-VL's ViT and
    merger, with RMS norms, a gated SiLU FFN, and windowed attention in every block but each
    n_wa_pattern-th, which attends to the whole image.

    The windows are squares of QWEN25VL_WINDOW_PIXELS (window_tokens tokens a side); images are
    sized and tokenized as Qwen2-VL's (n_tokens), so with patch_size 4 an image wider or taller
    than 112 pixels spans more than one window.
    """

    n_layer: int = 2
    n_wa_pattern: int = 2  # block i attends fully when (i + 1) % n_wa_pattern == 0; at least 2
    seed: int = 9753

    @property
    def window_tokens(self) -> int:
        """Tokens (2x2 patch groups) on a side of one attention window."""
        return QWEN25VL_WINDOW_PIXELS // (2 * self.patch_size)

    @property
    def full_attention_blocks(self) -> tuple[int, ...]:
        """The blocks that attend to the whole image (Qwen2.5-VL's fullatt_block_indexes)."""
        if self.n_wa_pattern < 1:
            raise ValueError("n_wa_pattern must be positive")
        return tuple(i for i in range(self.n_layer) if (i + 1) % self.n_wa_pattern == 0)


# mtmd's Whisper front end (mtmd-audio.cpp, clip.cpp): 16 kHz PCM, a 10 ms hop, 30 s windows.
WHISPER_SAMPLE_RATE = 16000
_WHISPER_HOP = 160
_WHISPER_WINDOW_FRAMES = 3000


@dataclasses.dataclass(frozen=True)
class AudioProjectorConfig:
    """Shape of a Qwen2-Audio-style mmproj (clip.projector_type "qwen2a"): a Whisper encoder
    (two conv1d layers, the second with stride 2, learned positions, pre-norm transformer
    blocks, a stride-2 average pool, a final layer norm) and one linear layer into the text
    model's embedding width.

    mtmd turns audio into log-mel windows of 30 s (3000 frames, n_mel_bins each) and encodes
    each window on its own into n_tokens_per_window embeddings.
    """

    n_mel_bins: int = 16
    n_embd: int = 16
    n_ff: int = 32
    n_layer: int = 1
    n_head: int = 2
    layer_norm_eps: float = 1e-5
    dtype: str = "f32"  # f32 or f16 for the matrices; norms, biases and positions stay f32
    seed: int = 1357

    @property
    def n_positions(self) -> int:
        """Learned positions: one per frame after the stride-2 conv (clip.cpp needs them all)."""
        return _WHISPER_WINDOW_FRAMES // 2

    @property
    def n_tokens_per_window(self) -> int:
        """Embeddings (tokens) one 30 s window yields, after the average pool."""
        return self.n_positions // 2

    @staticmethod
    def n_windows(n_samples: int) -> int:
        """Windows mtmd makes of n_samples at 16 kHz: it appends 30 s of silence and keeps the
        whole windows, so a clip shorter than 30 s makes one."""
        padded = max(n_samples, 201) + 30 * WHISPER_SAMPLE_RATE
        return (padded // _WHISPER_HOP + 1) // _WHISPER_WINDOW_FRAMES


def _gguf() -> Any:
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "building test models needs the gguf package: pip install ./vendor/llama.cpp/gguf-py"
        ) from exc
    return gguf


def _add_file_type(writer: Any, dtype: str) -> None:
    """general.file_type for a file whose matrices are `dtype` ("f32" or "f16")."""
    gguf = _gguf()
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)


def _copy_tokenizer(writer: Any, vocab: str) -> int:
    """Copies every ``tokenizer.*`` key of ggml-vocab-<vocab>.gguf; returns the vocabulary size."""
    gguf = _gguf()
    n_vocab = 0
    for name, value, main_type, sub_type in _read_gguf_keys(vocab_dir() / f"ggml-vocab-{vocab}.gguf", "tokenizer."):
        if main_type == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, value, main_type, sub_type=sub_type)
            if name == "tokenizer.ggml.tokens":
                n_vocab = len(value)
        else:
            writer.add_key_value(name, value, main_type)
    if n_vocab == 0:
        raise ValueError(f"ggml-vocab-{vocab}.gguf has no token list")
    return n_vocab


# GGUF value type -> struct format of one value (8: string and 9: array are read apart)
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def _read_gguf_keys(path: Path, prefix: str = "") -> list[tuple[str, Any, Any, Any]]:
    """(name, value, type, element type) of each key starting with prefix of a little-endian GGUF file.

    gguf.GGUFReader takes about 20 s over the 150k tokens and merges of a Qwen2 vocabulary;
    this reads the metadata in one pass.
    """
    import struct

    gguf = _gguf()
    data = path.read_bytes()
    if data[:4] != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file")
    at = 4 + 4 + 8  # magic, version, tensor count
    (n_keys,) = struct.unpack_from("<Q", data, at)
    at += 8

    def string() -> str:
        nonlocal at
        (n,) = struct.unpack_from("<Q", data, at)
        text = data[at + 8:at + 8 + n].decode("utf-8")
        at += 8 + n
        return text

    def scalar(kind: int) -> Any:
        nonlocal at
        if kind == 8:
            return string()
        fmt = "<" + _GGUF_SCALARS[kind]
        (value,) = struct.unpack_from(fmt, data, at)
        at += struct.calcsize(fmt)
        return value

    keys = []
    for _ in range(n_keys):
        name = string()
        (kind,) = struct.unpack_from("<I", data, at)
        at += 4
        if kind != 9:
            value, sub_kind = scalar(kind), None
        else:
            sub_kind, count = struct.unpack_from("<IQ", data, at)
            at += 12
            if sub_kind == 8:
                value = [string() for _ in range(count)]
            elif sub_kind not in _GGUF_SCALARS:
                raise ValueError(f"{path}: {name} is an array of arrays, which no vocabulary file holds")
            else:
                fmt = "<" + _GGUF_SCALARS[sub_kind] * count
                value = list(struct.unpack_from(fmt, data, at))
                at += struct.calcsize(fmt)
        if name.startswith(prefix):
            keys.append((name, value, gguf.GGUFValueType(kind),
                         None if sub_kind is None else gguf.GGUFValueType(sub_kind)))
    return keys


class _Weights:
    """Seeded random tensors in GGUF layout (numpy shape = (rows, cols) = ggml ne reversed)."""

    def __init__(self, seed: int, dtype: str) -> None:
        if dtype not in ("f32", "f16"):
            raise ValueError("dtype must be 'f32' or 'f16'")
        self.rng = np.random.default_rng(seed)
        self.matrix_dtype = np.float16 if dtype == "f16" else np.float32

    def matrix(self, rows: int, cols: int, scale: float | None = None) -> np.ndarray:
        std = scale if scale is not None else 1.0 / np.sqrt(cols)
        return (self.rng.standard_normal((rows, cols), dtype=np.float32) * std).astype(self.matrix_dtype)

    def norm(self, n: int) -> np.ndarray:
        return (1.0 + 0.1 * self.rng.standard_normal(n, dtype=np.float32)).astype(np.float32)

    def bias(self, n: int) -> np.ndarray:
        return (0.02 * self.rng.standard_normal(n, dtype=np.float32)).astype(np.float32)


def build_llama(path: str | os.PathLike[str], config: LlamaConfig = LlamaConfig(), *, split_max_tensors: int = 0) -> list[Path]:
    """Writes a llama model; returns the written files (several when split_max_tensors is set)."""
    gguf = _gguf()
    c = config
    path = Path(path)
    writer = gguf.GGUFWriter(path, "llama", split_max_tensors=split_max_tensors)
    n_vocab = _add_decoder_header(writer, c, "llama")
    _add_decoder_tensors(writer, c, n_vocab, qkv_bias=False)
    return _finish(writer, path)


def build_qwen2vl(path: str | os.PathLike[str], config: Qwen2VLConfig = Qwen2VLConfig()) -> Path:
    """Writes a Qwen2-VL text model (llama.cpp arch "qwen2vl", M-RoPE); returns the written file."""
    gguf = _gguf()
    c = config
    if len(c.rope_sections) != 4 or min(c.rope_sections) < 0 or sum(c.rope_sections) * 2 != c.head_dim:
        raise ValueError("rope_sections must be 4 non-negative rotary pair counts that add up to head_dim / 2")
    if c.rope_sections[0] < 1 or c.rope_sections[1] < 1:
        # (llama.cpp counts M-RoPE as in use only when the temporal and height sections are)
        raise ValueError("the first two rope_sections (time, height) must be positive")
    path = Path(path)
    writer = gguf.GGUFWriter(path, "qwen2vl")
    n_vocab = _add_decoder_header(writer, c, "qwen2vl")
    writer.add_rope_dimension_sections(list(c.rope_sections))
    _add_decoder_tensors(writer, c, n_vocab, qkv_bias=True)
    return _finish(writer, path)[0]


def _add_decoder_header(writer: Any, c: LlamaConfig, arch: str, *, head_count_kv: list[int] | None = None) -> int:
    """The tokenizer and hyperparameters of a llama-shaped decoder; returns the vocabulary size.
    head_count_kv, one count per layer, replaces c.n_head_kv (0 marks a layer without attention)."""
    gguf = _gguf()
    if c.n_embd % c.n_head or c.n_head % c.n_head_kv:
        raise ValueError("n_embd must divide by n_head, and n_head by n_head_kv")
    n_vocab = _copy_tokenizer(writer, c.vocab)
    writer.add_name(f"allama-test-{arch}-{c.n_layer}x{c.n_embd}")
    writer.add_context_length(c.n_ctx_train)
    writer.add_embedding_length(c.n_embd)
    writer.add_feed_forward_length(c.n_ff)
    writer.add_block_count(c.n_layer)
    writer.add_head_count(c.n_head)
    writer.add_head_count_kv(c.n_head_kv if head_count_kv is None else head_count_kv)
    writer.add_rope_dimension_count(c.head_dim)
    writer.add_rope_freq_base(c.rope_freq_base)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_vocab_size(n_vocab)
    _add_file_type(writer, c.dtype)
    if c.chat_template is not None:
        writer.add_chat_template(c.chat_template)
    return n_vocab


def _add_decoder_tensors(writer: Any, c: LlamaConfig, n_vocab: int, *, qkv_bias: bool) -> None:
    """Embeddings, pre-norm blocks (grouped-query attention, SwiGLU) and the output head;
    with qkv_bias, each q/k/v projection's bias follows its weight."""
    w = _Weights(c.seed, c.dtype)
    kv_dim = c.head_dim * c.n_head_kv
    writer.add_tensor("token_embd.weight", w.matrix(n_vocab, c.n_embd, scale=1.0))
    for i in range(c.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", w.norm(c.n_embd))
        for name, n_out in (("attn_q", c.n_embd), ("attn_k", kv_dim), ("attn_v", kv_dim)):
            writer.add_tensor(f"blk.{i}.{name}.weight", w.matrix(n_out, c.n_embd))
            if qkv_bias:
                writer.add_tensor(f"blk.{i}.{name}.bias", w.bias(n_out))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w.matrix(c.n_embd, c.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", w.norm(c.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w.matrix(c.n_ff, c.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w.matrix(c.n_ff, c.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w.matrix(c.n_embd, c.n_ff))
    writer.add_tensor("output_norm.weight", w.norm(c.n_embd))
    # A large output scale gives peaked next-token distributions, so greedy
    # choices are decided by clear margins rather than rounding noise.
    writer.add_tensor("output.weight", w.matrix(n_vocab, c.n_embd, scale=4.0 / np.sqrt(c.n_embd)))


def _add_linear(writer: Any, w: "_Weights", name: str, n_out: int, n_in: int) -> None:
    """`name.weight` (n_out x n_in) and `name.bias`, in that order (the order fixes the weights)."""
    writer.add_tensor(f"{name}.weight", w.matrix(n_out, n_in))
    writer.add_tensor(f"{name}.bias", w.bias(n_out))


def _add_layer_norm(writer: Any, w: "_Weights", name: str, n: int) -> None:
    writer.add_tensor(f"{name}.weight", w.norm(n))
    writer.add_tensor(f"{name}.bias", w.bias(n))


def build_bert(path: str | os.PathLike[str], config: BertConfig = BertConfig()) -> list[Path]:
    """Writes a BERT encoder (mean pooling by default); returns the written file."""
    gguf = _gguf()
    c = config
    path = Path(path)
    writer = gguf.GGUFWriter(path, "bert")
    n_vocab = _copy_tokenizer(writer, c.vocab)
    writer.add_name(f"allama-test-bert-{c.n_layer}x{c.n_embd}")
    writer.add_context_length(c.n_ctx_train)
    writer.add_embedding_length(c.n_embd)
    writer.add_feed_forward_length(c.n_ff)
    writer.add_block_count(c.n_layer)
    writer.add_head_count(c.n_head)
    writer.add_layer_norm_eps(c.layer_norm_eps)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType(c.pooling_type))
    _add_file_type(writer, c.dtype)
    if "tokenizer.ggml.token_type_count" not in writer.kv_data[0]:
        writer.add_token_type_count(2)

    w = _Weights(c.seed, c.dtype)
    writer.add_tensor("token_embd.weight", w.matrix(n_vocab, c.n_embd, scale=1.0))
    writer.add_tensor("token_types.weight", w.matrix(2, c.n_embd, scale=0.1).astype(np.float32))
    writer.add_tensor("position_embd.weight", w.matrix(c.n_ctx_train, c.n_embd, scale=0.1).astype(np.float32))
    writer.add_tensor("token_embd_norm.weight", w.norm(c.n_embd))
    writer.add_tensor("token_embd_norm.bias", w.bias(c.n_embd))
    for i in range(c.n_layer):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            _add_linear(writer, w, f"blk.{i}.{name}", c.n_embd, c.n_embd)
        _add_layer_norm(writer, w, f"blk.{i}.attn_output_norm", c.n_embd)
        _add_linear(writer, w, f"blk.{i}.ffn_up", c.n_ff, c.n_embd)
        _add_linear(writer, w, f"blk.{i}.ffn_down", c.n_embd, c.n_ff)
        _add_layer_norm(writer, w, f"blk.{i}.layer_output_norm", c.n_embd)
    if c.pooling_type == 4:  # rank: dense + tanh on the CLS state, then one relevance score
        writer.add_tensor("cls.weight", w.matrix(c.n_embd, c.n_embd).astype(np.float32))
        writer.add_tensor("cls.bias", w.bias(c.n_embd))
        writer.add_tensor("cls.output.weight", w.matrix(1, c.n_embd).astype(np.float32))
        writer.add_tensor("cls.output.bias", w.bias(1))
    return _finish(writer, path)


def build_projector(path: str | os.PathLike[str], config: ProjectorConfig = ProjectorConfig(),
                    text_model: LlamaConfig = LlamaConfig()) -> Path:
    """Writes an mmproj for build_llama(text_model): llama.cpp's mtmd library loads it
    beside that model; its projector's output width is text_model.n_embd."""
    gguf = _gguf()
    c = config
    if c.image_size % c.patch_size or c.n_embd % c.n_head:
        raise ValueError("image_size must divide by patch_size, and n_embd by n_head")
    if c.n_ff == c.n_embd:
        # clip.cpp takes an ffn_down of input width n_embd for a legacy llava file with
        # ffn_up and ffn_down swapped, and swaps them back.
        raise ValueError("n_ff must differ from n_embd")
    path = Path(path)
    writer = gguf.GGUFWriter(path, "clip")
    writer.add_name(f"allama-test-mmproj-{c.n_layer}x{c.n_embd}")
    _add_file_type(writer, c.dtype)
    writer.add_clip_has_vision_encoder(True)
    # "mlp" (LLaVA 1.5) is in clip.cpp's projector table but not in gguf.VisionProjectorType:
    # only the legacy converter (tools/mtmd/legacy-models) writes it.
    writer.add_clip_projector_type("mlp")
    writer.add_vision_image_size(c.image_size)
    writer.add_vision_patch_size(c.patch_size)
    writer.add_vision_embedding_length(c.n_embd)
    writer.add_vision_feed_forward_length(c.n_ff)
    writer.add_vision_block_count(c.n_layer)
    writer.add_vision_head_count(c.n_head)
    writer.add_vision_attention_layernorm_eps(c.layer_norm_eps)
    # Required by the loader, unused by the "mlp" projector (CLIP's contrastive head width).
    writer.add_vision_projection_dim(text_model.n_embd)
    writer.add_vision_image_mean(list(c.image_mean))
    writer.add_vision_image_std(list(c.image_std))
    writer.add_vision_use_gelu(False)  # CLIP's quick GELU in the encoder's FFN

    w = _Weights(c.seed, c.dtype)
    # conv2d kernel: ggml ne (patch, patch, 3, n_embd)
    patch = w.matrix(c.n_embd, 3 * c.patch_size * c.patch_size)
    writer.add_tensor("v.patch_embd.weight", patch.reshape(c.n_embd, 3, c.patch_size, c.patch_size))
    writer.add_tensor("v.position_embd.weight", w.matrix(c.n_patches, c.n_embd, scale=0.1).astype(np.float32))
    writer.add_tensor("v.pre_ln.weight", w.norm(c.n_embd))
    writer.add_tensor("v.pre_ln.bias", w.bias(c.n_embd))
    for i in range(c.n_layer):
        _add_layer_norm(writer, w, f"v.blk.{i}.ln1", c.n_embd)
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            _add_linear(writer, w, f"v.blk.{i}.{name}", c.n_embd, c.n_embd)
        _add_layer_norm(writer, w, f"v.blk.{i}.ln2", c.n_embd)
        _add_linear(writer, w, f"v.blk.{i}.ffn_up", c.n_ff, c.n_embd)
        _add_linear(writer, w, f"v.blk.{i}.ffn_down", c.n_embd, c.n_ff)
    # The projector: linear, GELU, linear; LLaVA's hidden width is the text model's.
    _add_linear(writer, w, "mm.0", text_model.n_embd, c.n_embd)
    _add_linear(writer, w, "mm.2", text_model.n_embd, text_model.n_embd)
    return _finish(writer, path)[0]


def build_qwen2vl_projector(path: str | os.PathLike[str], config: Qwen2VLProjectorConfig = Qwen2VLProjectorConfig(),
                            text_model: LlamaConfig = Qwen2VLConfig()) -> Path:
    """Writes a "qwen2vl_merger" mmproj for build_qwen2vl(text_model): mtmd loads it beside that
    model; its merger's output width is text_model.n_embd."""
    gguf = _gguf()
    c = config
    path = Path(path)
    writer = gguf.GGUFWriter(path, "clip")
    _add_qwen_vision_header(writer, c, text_model, "qwen2vl", gguf.VisionProjectorType.QWEN2VL)
    # (no use_gelu / use_silu: the encoder's FFN takes CLIP's quick GELU, as Qwen2-VL's does)

    w = _Weights(c.seed, c.dtype)
    _add_temporal_patch_embedding(writer, w, c)
    for i in range(c.n_layer):
        _add_layer_norm(writer, w, f"v.blk.{i}.ln1", c.n_embd)
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            _add_linear(writer, w, f"v.blk.{i}.{name}", c.n_embd, c.n_embd)
        _add_layer_norm(writer, w, f"v.blk.{i}.ln2", c.n_embd)
        _add_linear(writer, w, f"v.blk.{i}.ffn_up", c.n_ff, c.n_embd)
        _add_linear(writer, w, f"v.blk.{i}.ffn_down", c.n_embd, c.n_ff)
    # The merger: Qwen2-VL's ln_q, then linear, GELU, linear over each 2x2 group.
    _add_layer_norm(writer, w, "v.post_ln", c.n_embd)
    _add_merger_mlp(writer, w, c, text_model)
    return _finish(writer, path)[0]


def build_qwen25vl_projector(path: str | os.PathLike[str], config: Qwen25VLProjectorConfig = Qwen25VLProjectorConfig(),
                             text_model: LlamaConfig = Qwen2VLConfig()) -> Path:
    """Writes a "qwen2.5vl_merger" mmproj for build_qwen2vl(text_model) (Qwen2.5-VL's text side is
    llama.cpp arch qwen2vl too): mtmd loads it beside that model; its merger's output width is
    text_model.n_embd."""
    gguf = _gguf()
    c = config
    if c.n_wa_pattern < 2:
        # 1 makes every block attend fully, and clip.cpp then aborts: its qwen2vl graph leaves the
        # window mask out, yet its input setter looks for it (GGML_ABORT "Failed to get tensor
        # window_mask"). 0 (no windows) is no Qwen2.5-VL; its converter writes fullatt_block_indexes[0] + 1.
        raise ValueError("n_wa_pattern must be at least 2: a windowed block before each full one")
    if c.window_tokens < 1:
        # clip.cpp steps through the token grid one window at a time: a window of 0 tokens never ends
        raise ValueError(f"patch_size must be at most {QWEN25VL_WINDOW_PIXELS // 2}: "
                         f"clip.cpp's {QWEN25VL_WINDOW_PIXELS}-pixel window must hold a 2x2 patch group")
    path = Path(path)
    writer = gguf.GGUFWriter(path, "clip")
    _add_qwen_vision_header(writer, c, text_model, "qwen25vl", gguf.VisionProjectorType.QWEN25VL)
    writer.add_vision_use_silu(True)  # the gated FFN: silu(gate(x)) * up(x)
    writer.add_vision_n_wa_pattern(c.n_wa_pattern)  # required by clip.cpp for this projector

    w = _Weights(c.seed, c.dtype)
    _add_temporal_patch_embedding(writer, w, c)
    for i in range(c.n_layer):
        # RMS norms: a weight, no bias
        writer.add_tensor(f"v.blk.{i}.ln1.weight", w.norm(c.n_embd))
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            _add_linear(writer, w, f"v.blk.{i}.{name}", c.n_embd, c.n_embd)
        writer.add_tensor(f"v.blk.{i}.ln2.weight", w.norm(c.n_embd))
        _add_linear(writer, w, f"v.blk.{i}.ffn_gate", c.n_ff, c.n_embd)
        _add_linear(writer, w, f"v.blk.{i}.ffn_up", c.n_ff, c.n_embd)
        _add_linear(writer, w, f"v.blk.{i}.ffn_down", c.n_embd, c.n_ff)
    # The merger: Qwen2.5-VL's ln_q (RMS), then linear, GELU, linear over each 2x2 group.
    writer.add_tensor("v.post_ln.weight", w.norm(c.n_embd))
    _add_merger_mlp(writer, w, c, text_model)
    return _finish(writer, path)[0]


def _add_qwen_vision_header(writer: Any, c: Qwen2VLProjectorConfig, text_model: LlamaConfig, kind: str,
                            projector_type: Any) -> None:
    """Checks c's shape and writes the hyperparameters Qwen2-VL and Qwen2.5-VL projectors share."""
    gguf = _gguf()
    if min(c.patch_size, c.n_embd, c.n_ff, c.n_layer, c.n_head) < 1:
        raise ValueError("patch_size, n_embd, n_ff, n_layer and n_head must be positive")
    if c.n_embd % c.n_head or (c.n_embd // c.n_head) % 4:
        # clip.cpp's vision M-RoPE turns head_dim / 4 pairs by each of 4 positions
        raise ValueError("n_embd must divide by n_head into heads whose width divides by 4")
    if c.n_ff == c.n_embd:
        # clip.cpp takes an ffn_down of input width n_embd for a legacy file with ffn_up and
        # ffn_down swapped, and swaps them back.
        raise ValueError("n_ff must differ from n_embd")
    writer.add_name(f"allama-test-{kind}-mmproj-{c.n_layer}x{c.n_embd}")
    _add_file_type(writer, c.dtype)
    writer.add_clip_has_vision_encoder(True)
    writer.add_clip_projector_type(projector_type)
    writer.add_vision_image_size(c.image_size)
    writer.add_vision_patch_size(c.patch_size)
    writer.add_vision_embedding_length(c.n_embd)
    writer.add_vision_feed_forward_length(c.n_ff)
    writer.add_vision_block_count(c.n_layer)
    writer.add_vision_head_count(c.n_head)
    writer.add_vision_attention_layernorm_eps(c.layer_norm_eps)
    writer.add_vision_projection_dim(text_model.n_embd)
    writer.add_vision_image_mean(list(c.image_mean))
    writer.add_vision_image_std(list(c.image_std))


def _add_temporal_patch_embedding(writer: Any, w: "_Weights", c: Qwen2VLProjectorConfig) -> None:
    """The two frames of the temporal patch, each a conv2d kernel: ggml ne (patch, patch, 3, n_embd).
    A still image is both frames, so clip.cpp adds the two convolutions of it."""
    for name in ("v.patch_embd.weight", "v.patch_embd.weight.1"):
        patch = w.matrix(c.n_embd, 3 * c.patch_size * c.patch_size)
        writer.add_tensor(name, patch.reshape(c.n_embd, 3, c.patch_size, c.patch_size))


def _add_merger_mlp(writer: Any, w: "_Weights", c: Qwen2VLProjectorConfig, text_model: LlamaConfig) -> None:
    """The merger's two linear layers over a 2x2 group of patches, concatenated (4 * n_embd wide),
    into the text model's width (clip.cpp takes the output width from mm.2.bias)."""
    n_merged = 4 * c.n_embd
    _add_linear(writer, w, "mm.0", n_merged, n_merged)
    _add_linear(writer, w, "mm.2", text_model.n_embd, n_merged)


def build_audio_projector(path: str | os.PathLike[str], config: AudioProjectorConfig = AudioProjectorConfig(),
                          text_model: LlamaConfig = LlamaConfig()) -> Path:
    """Writes an audio-only mmproj for build_llama(text_model): mtmd loads it beside that model
    and takes 16 kHz audio; its projector's output width is text_model.n_embd."""
    gguf = _gguf()
    c = config
    if min(c.n_mel_bins, c.n_embd, c.n_ff, c.n_layer, c.n_head) < 1:
        # (clip.cpp's Whisper graph reads layer 0 unchecked: n_layer=0 would crash it)
        raise ValueError("n_mel_bins, n_embd, n_ff, n_layer and n_head must be positive")
    if c.n_embd % c.n_head:
        raise ValueError("n_embd must divide by n_head")
    path = Path(path)
    writer = gguf.GGUFWriter(path, "clip")
    writer.add_name(f"allama-test-audio-mmproj-{c.n_layer}x{c.n_embd}")
    _add_file_type(writer, c.dtype)
    writer.add_clip_has_audio_encoder(True)
    writer.add_clip_projector_type("qwen2a")
    writer.add_audio_num_mel_bins(c.n_mel_bins)
    writer.add_audio_embedding_length(c.n_embd)
    writer.add_audio_feed_forward_length(c.n_ff)
    writer.add_audio_block_count(c.n_layer)
    writer.add_audio_head_count(c.n_head)
    writer.add_audio_attention_layernorm_eps(c.layer_norm_eps)
    writer.add_audio_projection_dim(text_model.n_embd)

    w = _Weights(c.seed, c.dtype)
    # conv1d kernels of width 3: ggml ne (3, in, out); biases ne (1, out) broadcast over frames
    conv1 = w.matrix(c.n_embd, c.n_mel_bins * 3).reshape(c.n_embd, c.n_mel_bins, 3)
    writer.add_tensor("a.conv1d.1.weight", conv1)
    writer.add_tensor("a.conv1d.1.bias", w.bias(c.n_embd).reshape(c.n_embd, 1))
    conv2 = w.matrix(c.n_embd, c.n_embd * 3).reshape(c.n_embd, c.n_embd, 3)
    writer.add_tensor("a.conv1d.2.weight", conv2)
    writer.add_tensor("a.conv1d.2.bias", w.bias(c.n_embd).reshape(c.n_embd, 1))
    writer.add_tensor("a.position_embd.weight", w.matrix(c.n_positions, c.n_embd, scale=0.1).astype(np.float32))
    for i in range(c.n_layer):
        _add_layer_norm(writer, w, f"a.blk.{i}.ln1", c.n_embd)
        _add_linear(writer, w, f"a.blk.{i}.attn_q", c.n_embd, c.n_embd)
        writer.add_tensor(f"a.blk.{i}.attn_k.weight", w.matrix(c.n_embd, c.n_embd))  # Whisper: no key bias
        _add_linear(writer, w, f"a.blk.{i}.attn_v", c.n_embd, c.n_embd)
        _add_linear(writer, w, f"a.blk.{i}.attn_out", c.n_embd, c.n_embd)
        _add_layer_norm(writer, w, f"a.blk.{i}.ln2", c.n_embd)
        _add_linear(writer, w, f"a.blk.{i}.ffn_up", c.n_ff, c.n_embd)
        _add_linear(writer, w, f"a.blk.{i}.ffn_down", c.n_embd, c.n_ff)
    _add_layer_norm(writer, w, "a.post_ln", c.n_embd)
    _add_linear(writer, w, "mm.a.fc", text_model.n_embd, c.n_embd)
    return _finish(writer, path)[0]


# Weights a test LoRA adapts, in the tiny llama: attention queries and FFN up-projections.
LORA_TARGETS = ("attn_q", "ffn_up")


def build_lora(path: str | os.PathLike[str], config: LlamaConfig = LlamaConfig(), *, rank: int = 4,
               alpha: float = 8.0, seed: int = 99) -> Path:
    """Writes a LoRA adapter for build_llama(config): lora_a (rank, in) and lora_b (out, rank)
    for every LORA_TARGETS matrix; llama.cpp applies W + scale * alpha / rank * B @ A."""
    gguf = _gguf()
    c = config
    path = Path(path)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    rng = np.random.default_rng(seed)
    shapes = {"attn_q": (c.n_embd, c.n_embd), "ffn_up": (c.n_ff, c.n_embd)}
    for i in range(c.n_layer):
        for name in LORA_TARGETS:
            out_dim, in_dim = shapes[name]
            a = (rng.standard_normal((rank, in_dim)) / np.sqrt(in_dim)).astype(np.float32)
            b = (rng.standard_normal((out_dim, rank)) / np.sqrt(rank)).astype(np.float32)
            writer.add_tensor(f"blk.{i}.{name}.weight.lora_a", a)
            writer.add_tensor(f"blk.{i}.{name}.weight.lora_b", b)
    return _finish(writer, path)[0]


def _finish(writer: Any, path: Path) -> list[Path]:
    shards = writer.format_shard_names(path)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return shards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a GGUF model with seeded random weights.")
    parser.add_argument("arch", choices=["llama", "qwen2vl", "bert", "projector", "qwen2vl-projector",
                                         "qwen25vl-projector", "audio-projector"])
    parser.add_argument("output", type=Path)
    parser.add_argument("--preset", choices=sorted(LLAMA_PRESETS), default="tiny",
                        help="llama size; for a projector, the llama it feeds (the Qwen kinds have one size)")
    parser.add_argument("--dtype", choices=["f32", "f16"], help="override the preset's matrix type")
    parser.add_argument("--seed", type=int, help="override the preset's seed")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("dtype", args.dtype), ("seed", args.seed)) if v is not None}
    if args.arch == "llama":
        files = build_llama(args.output, dataclasses.replace(LLAMA_PRESETS[args.preset], **overrides))
    elif args.arch == "projector":
        files = [build_projector(args.output, dataclasses.replace(ProjectorConfig(), **overrides),
                                 LLAMA_PRESETS[args.preset])]
    elif args.arch.startswith(("qwen2vl", "qwen25vl")) and args.preset != "tiny":
        parser.error("the Qwen-VL models come in one size: --preset does not apply")
    elif args.arch == "qwen2vl":
        files = [build_qwen2vl(args.output, dataclasses.replace(Qwen2VLConfig(), **overrides))]
    elif args.arch == "qwen2vl-projector":
        files = [build_qwen2vl_projector(args.output, dataclasses.replace(Qwen2VLProjectorConfig(), **overrides))]
    elif args.arch == "qwen25vl-projector":
        files = [build_qwen25vl_projector(args.output, dataclasses.replace(Qwen25VLProjectorConfig(), **overrides))]
    elif args.arch == "audio-projector":
        files = [build_audio_projector(args.output, dataclasses.replace(AudioProjectorConfig(), **overrides),
                                       LLAMA_PRESETS[args.preset])]
    else:
        files = build_bert(args.output, dataclasses.replace(BertConfig(), **overrides))
    for f in files:
        print(f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
