"""Tiny GGUF models of real architectures beyond the llama, with seeded random weights.

Each builder writes a file llama.cpp loads as that architecture: Qwen2 (q/k/v biases), Qwen3
(q/k RMS norms), Gemma 3 (interleaved sliding-window attention, post-attention and post-FFN
norms, tied embeddings), Phi-3 (fused qkv and gate_up projections), Qwen3-MoE (routed experts),
LFM2 (a hybrid of short-convolution and attention layers) and Mamba (a pure state-space
recurrent model). Tokenizers are copied from llama.cpp's ``ggml-vocab-*.gguf`` files.

Widths are multiples of 256, so that k-quants (rows of 256) really apply when the files are
quantized. Random weights prove only self-consistency: these are fixtures for comparing the
engine with a plain native decode, not oracles of the real models.

Command line::

    python -m allama.testing.architectures ARCH OUT.gguf [--dtype f16|f32]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from allama.testing.model_builder import (
    LlamaConfig,
    _add_decoder_header,
    _add_file_type,
    _copy_tokenizer,
    _finish,
    _gguf,
    _Weights,
)

__all__ = [
    "Qwen2Config",
    "Qwen3Config",
    "Gemma3Config",
    "Phi3Config",
    "Qwen3MoeConfig",
    "Lfm2Config",
    "MambaConfig",
    "ARCHITECTURES",
    "build_architecture",
    "build_qwen2",
    "build_qwen3",
    "build_gemma3",
    "build_phi3",
    "build_qwen3moe",
    "build_lfm2",
    "build_mamba",
]


@dataclasses.dataclass(frozen=True)
class Qwen2Config(LlamaConfig):
    """Qwen2: the llama's blocks with biases on q/k/v; tied embeddings, as in Qwen2-0.5B."""

    vocab: str = "qwen2"
    n_embd: int = 256
    n_ff: int = 512
    dtype: str = "f16"
    rope_freq_base: float = 1000000.0
    rms_norm_eps: float = 1e-6
    seed: int = 2001


@dataclasses.dataclass(frozen=True)
class Qwen3Config(LlamaConfig):
    """Qwen3: no q/k/v biases, an RMS norm over each query and key head; tied embeddings, as in
    Qwen3 up to 4B."""

    vocab: str = "starcoder"  # a 49k BPE: the Qwen2 vocabulary (152k) is qwen2's, to keep files small
    n_embd: int = 256
    n_ff: int = 512
    dtype: str = "f16"
    rope_freq_base: float = 1000000.0
    rms_norm_eps: float = 1e-6
    seed: int = 3001


@dataclasses.dataclass(frozen=True)
class Gemma3Config(LlamaConfig):
    """Gemma 3: every layer but each swa_pattern-th attends to the last sliding_window tokens
    only (llama.cpp keeps those layers in the iSWA cache), with a rotary base of its own; RMS
    norms after attention and after the GELU FFN; embeddings scaled by sqrt(n_embd) and tied.
    With 2 layers and swa_pattern 2, layer 0 slides and layer 1 attends to everything."""

    vocab: str = "llama-spm"
    n_embd: int = 256
    n_ff: int = 512
    dtype: str = "f16"
    rope_freq_base: float = 1000000.0
    rope_freq_base_swa: float = 10000.0
    rms_norm_eps: float = 1e-6
    sliding_window: int = 32
    swa_pattern: int = 2
    seed: int = 4001


@dataclasses.dataclass(frozen=True)
class Phi3Config(LlamaConfig):
    """Phi-3: q, k and v in one fused matrix, the FFN's gate and up in another."""

    vocab: str = "phi-3"
    n_embd: int = 256
    n_ff: int = 512
    n_head_kv: int = 4  # Phi-3 mini has no grouped-query attention
    dtype: str = "f16"
    seed: int = 5001


@dataclasses.dataclass(frozen=True)
class Qwen3MoeConfig(LlamaConfig):
    """Qwen3-MoE: Qwen3's attention, and an FFN of n_expert SwiGLU experts of which a softmax
    router picks n_expert_used per token (weights renormalised)."""

    vocab: str = "deepseek-coder"  # a 32k BPE, to keep the files small
    n_embd: int = 256
    n_ff: int = 512
    n_expert: int = 4
    n_expert_used: int = 2
    n_ff_exp: int = 256
    dtype: str = "f16"
    rope_freq_base: float = 1000000.0
    rms_norm_eps: float = 1e-6
    seed: int = 6001


@dataclasses.dataclass(frozen=True)
class Lfm2Config(LlamaConfig):
    """LFM2: a hybrid whose layers are either gated short convolutions (a recurrent state of
    conv_l_cache - 1 inputs) or attention with q/k norms; tied embeddings. attention_layers
    says which layers attend (llama.cpp reads it from a per-layer head_count_kv of 0 or not)."""

    vocab: str = "gpt-2"
    n_embd: int = 256
    n_ff: int = 512
    conv_l_cache: int = 3
    attention_layers: tuple[int, ...] = (1,)
    dtype: str = "f16"
    rope_freq_base: float = 1000000.0
    seed: int = 7001


@dataclasses.dataclass(frozen=True)
class MambaConfig:
    """Mamba (v1): selective state-space blocks only, no attention; a recurrent state per
    sequence (conv inputs and the SSM state) instead of a KV cache; tied embeddings, as in the
    Mamba checkpoints. llama.cpp requires d_inner = 2 * n_embd."""

    vocab: str = "gpt-neox"
    n_embd: int = 256
    n_layer: int = 2
    d_state: int = 16
    d_conv: int = 4
    dt_rank: int = 16
    n_ctx_train: int = 1 << 20  # no positions: as the converter writes
    rms_norm_eps: float = 1e-5
    dtype: str = "f16"
    seed: int = 8001

    @property
    def d_inner(self) -> int:
        return 2 * self.n_embd


# --- shared pieces ----------------------------------------------------------


def _f32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32)


def _add_attention(writer: Any, w: _Weights, i: int, c: LlamaConfig, *, qkv_bias: bool = False,
                   qk_norm: bool = False) -> None:
    """Separate q/k/v projections (optionally with biases), optional per-head q/k RMS norms,
    and the output projection of layer i."""
    q_dim, kv_dim = c.n_head * c.head_dim, c.n_head_kv * c.head_dim
    for name, n_out in (("attn_q", q_dim), ("attn_k", kv_dim), ("attn_v", kv_dim)):
        writer.add_tensor(f"blk.{i}.{name}.weight", w.matrix(n_out, c.n_embd))
        if qkv_bias:
            writer.add_tensor(f"blk.{i}.{name}.bias", w.bias(n_out))
    if qk_norm:
        writer.add_tensor(f"blk.{i}.attn_q_norm.weight", w.norm(c.head_dim))
        writer.add_tensor(f"blk.{i}.attn_k_norm.weight", w.norm(c.head_dim))
    writer.add_tensor(f"blk.{i}.attn_output.weight", w.matrix(c.n_embd, q_dim))


def _add_gated_ffn(writer: Any, w: _Weights, i: int, n_embd: int, n_ff: int) -> None:
    writer.add_tensor(f"blk.{i}.ffn_gate.weight", w.matrix(n_ff, n_embd))
    writer.add_tensor(f"blk.{i}.ffn_up.weight", w.matrix(n_ff, n_embd))
    writer.add_tensor(f"blk.{i}.ffn_down.weight", w.matrix(n_embd, n_ff))


# A tied head scores each token by the final hidden state (RMS about 1 after the norm) times its
# embedding, and the residual stream carries the current token's own embedding: large embeddings
# make such a model repeat its input token. So tied embeddings are small (0.03 RMS in the residual
# stream, where attention and the FFN add about 1) and the final norm's gain is large instead, for
# logits of a standard deviation of about 4 as the untied heads' 4 / sqrt(n_embd) give: greedy
# choices are decided by clear margins and follow the context.
_TIED_RESIDUAL_RMS = 0.03
_LOGIT_STD = 4.0


def _tied_scale(input_scale: float) -> float:
    """The standard deviation of tied embeddings that the model multiplies by input_scale."""
    return _TIED_RESIDUAL_RMS / input_scale


def _add_embeddings(writer: Any, w: _Weights, n_vocab: int, n_embd: int, *, tied: bool,
                    input_scale: float = 1.0) -> None:
    scale = _tied_scale(input_scale) if tied else 1.0
    writer.add_tensor("token_embd.weight", w.matrix(n_vocab, n_embd, scale=scale))


def _add_head(writer: Any, w: _Weights, n_vocab: int, n_embd: int, *, tied: bool, input_scale: float = 1.0,
              norm_name: str = "output_norm") -> None:
    if tied:
        gain = _LOGIT_STD / (_tied_scale(input_scale) * np.sqrt(n_embd))
        writer.add_tensor(f"{norm_name}.weight", _f32(gain * w.norm(n_embd)))
    else:
        writer.add_tensor(f"{norm_name}.weight", w.norm(n_embd))
        writer.add_tensor("output.weight", w.matrix(n_vocab, n_embd, scale=_LOGIT_STD / np.sqrt(n_embd)))


# --- builders ---------------------------------------------------------------


def _build_qwen(path: str | os.PathLike[str], config: LlamaConfig, arch: str, **attention: bool) -> Path:
    """A Qwen2-family decoder: llama's layout with tied embeddings; `attention` picks qkv
    biases (qwen2) or per-head q/k norms (qwen3)."""
    c, path = config, Path(path)
    writer = _gguf().GGUFWriter(path, arch)
    n_vocab = _add_decoder_header(writer, c, arch)
    w = _Weights(c.seed, c.dtype)
    _add_embeddings(writer, w, n_vocab, c.n_embd, tied=True)
    for i in range(c.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", w.norm(c.n_embd))
        _add_attention(writer, w, i, c, **attention)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", w.norm(c.n_embd))
        _add_gated_ffn(writer, w, i, c.n_embd, c.n_ff)
    _add_head(writer, w, n_vocab, c.n_embd, tied=True)
    return _finish(writer, path)[0]


def build_qwen2(path: str | os.PathLike[str], config: Qwen2Config = Qwen2Config()) -> Path:
    """Writes a Qwen2 model (llama.cpp arch "qwen2"); returns the written file."""
    return _build_qwen(path, config, "qwen2", qkv_bias=True)


def build_qwen3(path: str | os.PathLike[str], config: Qwen3Config = Qwen3Config()) -> Path:
    """Writes a Qwen3 model (llama.cpp arch "qwen3"); returns the written file."""
    return _build_qwen(path, config, "qwen3", qk_norm=True)


def build_gemma3(path: str | os.PathLike[str], config: Gemma3Config = Gemma3Config()) -> Path:
    """Writes a Gemma 3 text model (llama.cpp arch "gemma3"); sliding_window 0 writes none, and
    every layer then attends to the whole context. Returns the written file."""
    c, path = config, Path(path)
    if c.sliding_window and c.swa_pattern < 1:
        raise ValueError("swa_pattern must be positive: each swa_pattern-th layer attends to everything")
    writer = _gguf().GGUFWriter(path, "gemma3")
    n_vocab = _add_decoder_header(writer, c, "gemma3")
    writer.add_key_length(c.head_dim)
    writer.add_value_length(c.head_dim)
    if c.sliding_window:
        writer.add_sliding_window(c.sliding_window)
        writer.add_sliding_window_pattern(c.swa_pattern)
        writer.add_rope_freq_base_swa(c.rope_freq_base_swa)
    w = _Weights(c.seed, c.dtype)
    input_scale = float(np.sqrt(c.n_embd))  # gemma multiplies the embeddings by sqrt(n_embd)
    _add_embeddings(writer, w, n_vocab, c.n_embd, tied=True, input_scale=input_scale)
    for i in range(c.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", w.norm(c.n_embd))
        _add_attention(writer, w, i, c, qk_norm=True)
        writer.add_tensor(f"blk.{i}.post_attention_norm.weight", w.norm(c.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", w.norm(c.n_embd))
        _add_gated_ffn(writer, w, i, c.n_embd, c.n_ff)
        writer.add_tensor(f"blk.{i}.post_ffw_norm.weight", w.norm(c.n_embd))
    _add_head(writer, w, n_vocab, c.n_embd, tied=True, input_scale=input_scale)
    return _finish(writer, path)[0]


def build_phi3(path: str | os.PathLike[str], config: Phi3Config = Phi3Config()) -> Path:
    """Writes a Phi-3 model (llama.cpp arch "phi3"); returns the written file."""
    c, path = config, Path(path)
    writer = _gguf().GGUFWriter(path, "phi3")
    n_vocab = _add_decoder_header(writer, c, "phi3")
    w = _Weights(c.seed, c.dtype)
    _add_embeddings(writer, w, n_vocab, c.n_embd, tied=False)
    kv_dim = c.n_head_kv * c.head_dim
    for i in range(c.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", w.norm(c.n_embd))
        # rows: the queries, then the keys, then the values
        writer.add_tensor(f"blk.{i}.attn_qkv.weight", w.matrix(c.n_embd + 2 * kv_dim, c.n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w.matrix(c.n_embd, c.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", w.norm(c.n_embd))
        # rows: the gate, then the up projection (llama.cpp splits the product in two)
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w.matrix(2 * c.n_ff, c.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w.matrix(c.n_embd, c.n_ff))
    _add_head(writer, w, n_vocab, c.n_embd, tied=False)
    return _finish(writer, path)[0]


def build_qwen3moe(path: str | os.PathLike[str], config: Qwen3MoeConfig = Qwen3MoeConfig()) -> Path:
    """Writes a Qwen3-MoE model (llama.cpp arch "qwen3moe"); returns the written file."""
    c, path = config, Path(path)
    if not 0 < c.n_expert_used <= c.n_expert:
        raise ValueError("n_expert_used must be between 1 and n_expert")
    writer = _gguf().GGUFWriter(path, "qwen3moe")
    n_vocab = _add_decoder_header(writer, c, "qwen3moe")
    writer.add_expert_count(c.n_expert)
    writer.add_expert_used_count(c.n_expert_used)
    writer.add_expert_feed_forward_length(c.n_ff_exp)
    w = _Weights(c.seed, c.dtype)
    _add_embeddings(writer, w, n_vocab, c.n_embd, tied=False)
    e, f = c.n_expert, c.n_ff_exp
    for i in range(c.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", w.norm(c.n_embd))
        _add_attention(writer, w, i, c, qk_norm=True)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", w.norm(c.n_embd))
        # the router stays F32, as converters write it (llama.cpp never quantizes it)
        writer.add_tensor(f"blk.{i}.ffn_gate_inp.weight", _f32(w.matrix(e, c.n_embd, scale=1.0)))
        # experts stacked on the outermost axis: ggml ne (n_in, n_out, n_expert)
        writer.add_tensor(f"blk.{i}.ffn_gate_exps.weight", w.matrix(e * f, c.n_embd).reshape(e, f, c.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up_exps.weight", w.matrix(e * f, c.n_embd).reshape(e, f, c.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down_exps.weight", w.matrix(e * c.n_embd, f).reshape(e, c.n_embd, f))
    _add_head(writer, w, n_vocab, c.n_embd, tied=False)
    return _finish(writer, path)[0]


def build_lfm2(path: str | os.PathLike[str], config: Lfm2Config = Lfm2Config()) -> Path:
    """Writes an LFM2 model (llama.cpp arch "lfm2", hybrid memory: a KV cache for the attention
    layers, a recurrent state for the convolution layers); returns the written file."""
    c, path = config, Path(path)
    if c.conv_l_cache < 2:
        raise ValueError("conv_l_cache must be at least 2: the state holds conv_l_cache - 1 inputs")
    if any(not 0 <= i < c.n_layer for i in c.attention_layers):
        raise ValueError("attention_layers must be layer indices")
    writer = _gguf().GGUFWriter(path, "lfm2")
    kv_heads = [c.n_head_kv if i in c.attention_layers else 0 for i in range(c.n_layer)]
    n_vocab = _add_decoder_header(writer, c, "lfm2", head_count_kv=kv_heads)
    writer.add_shortconv_l_cache(c.conv_l_cache)
    w = _Weights(c.seed, c.dtype)
    _add_embeddings(writer, w, n_vocab, c.n_embd, tied=True)
    for i in range(c.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", w.norm(c.n_embd))
        if i in c.attention_layers:
            _add_attention(writer, w, i, c, qk_norm=True)
        else:
            # in_proj gives the input gate, the output gate and the convolved input (n_embd each)
            writer.add_tensor(f"blk.{i}.shortconv.in_proj.weight", w.matrix(3 * c.n_embd, c.n_embd))
            # a depthwise kernel per channel: ggml ne (l_cache, n_embd); F32 for ggml_ssm_conv
            writer.add_tensor(f"blk.{i}.shortconv.conv.weight",
                              _f32(w.matrix(c.n_embd, c.conv_l_cache, scale=1.0 / np.sqrt(c.conv_l_cache))))
            writer.add_tensor(f"blk.{i}.shortconv.out_proj.weight", w.matrix(c.n_embd, c.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", w.norm(c.n_embd))
        _add_gated_ffn(writer, w, i, c.n_embd, c.n_ff)
    # LFM2's final norm goes by the name "token_embd_norm" in its GGUF files
    _add_head(writer, w, n_vocab, c.n_embd, tied=True, norm_name="token_embd_norm")
    return _finish(writer, path)[0]


def build_mamba(path: str | os.PathLike[str], config: MambaConfig = MambaConfig()) -> Path:
    """Writes a Mamba model (llama.cpp arch "mamba", recurrent memory only); returns the file."""
    gguf = _gguf()
    c, path = config, Path(path)
    if min(c.n_embd, c.n_layer, c.d_state, c.dt_rank) < 1 or c.d_conv < 2:
        raise ValueError("n_embd, n_layer, d_state and dt_rank must be positive, d_conv at least 2")
    writer = gguf.GGUFWriter(path, "mamba")
    n_vocab = _copy_tokenizer(writer, c.vocab)
    writer.add_name(f"allama-test-mamba-{c.n_layer}x{c.n_embd}")
    writer.add_context_length(c.n_ctx_train)
    writer.add_embedding_length(c.n_embd)
    writer.add_feed_forward_length(0)
    writer.add_head_count(0)
    writer.add_block_count(c.n_layer)
    writer.add_ssm_conv_kernel(c.d_conv)
    writer.add_ssm_inner_size(c.d_inner)
    writer.add_ssm_state_size(c.d_state)
    writer.add_ssm_time_step_rank(c.dt_rank)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_vocab_size(n_vocab)
    _add_file_type(writer, c.dtype)
    w = _Weights(c.seed, c.dtype)
    d = c.d_inner
    _add_embeddings(writer, w, n_vocab, c.n_embd, tied=True)
    for i in range(c.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", w.norm(c.n_embd))
        writer.add_tensor(f"blk.{i}.ssm_in.weight", w.matrix(2 * d, c.n_embd))  # x, then the gate z
        writer.add_tensor(f"blk.{i}.ssm_conv1d.weight", _f32(w.matrix(d, c.d_conv, scale=1.0 / np.sqrt(c.d_conv))))
        writer.add_tensor(f"blk.{i}.ssm_conv1d.bias", w.bias(d))
        writer.add_tensor(f"blk.{i}.ssm_x.weight", w.matrix(c.dt_rank + 2 * c.d_state, d))  # dt, B, C
        writer.add_tensor(f"blk.{i}.ssm_dt.weight", w.matrix(d, c.dt_rank))
        # time steps softplus(dt + bias) of about 0.01 to 0.1, as Mamba initialises them
        dt = np.exp(w.rng.uniform(np.log(0.01), np.log(0.1), d)).astype(np.float32)
        writer.add_tensor(f"blk.{i}.ssm_dt.bias", (dt + np.log(-np.expm1(-dt))).astype(np.float32))
        # A = -exp(A_log) with Mamba's A_log = log(1..d_state); stored as A itself, F32
        a = -np.tile(np.arange(1, c.d_state + 1, dtype=np.float32), (d, 1))
        writer.add_tensor(f"blk.{i}.ssm_a", a)
        writer.add_tensor(f"blk.{i}.ssm_d", np.ones(d, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ssm_out.weight", w.matrix(c.n_embd, d))
    _add_head(writer, w, n_vocab, c.n_embd, tied=True)
    return _finish(writer, path)[0]


# name -> (builder, its default config); each builder takes (path, config) and returns the file
ARCHITECTURES: dict[str, tuple[Callable[..., Path], Any]] = {
    "qwen2": (build_qwen2, Qwen2Config()),
    "qwen3": (build_qwen3, Qwen3Config()),
    "gemma3": (build_gemma3, Gemma3Config()),
    "phi3": (build_phi3, Phi3Config()),
    "qwen3moe": (build_qwen3moe, Qwen3MoeConfig()),
    "lfm2": (build_lfm2, Lfm2Config()),
    "mamba": (build_mamba, MambaConfig()),
}


def build_architecture(arch: str, path: str | os.PathLike[str], **overrides: Any) -> Path:
    """Writes the tiny model of `arch` (a key of ARCHITECTURES), its default config changed by
    `overrides` (dtype="f32", seed=..., ...); returns the written file."""
    try:
        builder, config = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; one of: {', '.join(ARCHITECTURES)}") from None
    return builder(path, dataclasses.replace(config, **overrides))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a tiny GGUF model of a real architecture.")
    parser.add_argument("arch", choices=sorted(ARCHITECTURES))
    parser.add_argument("output", type=Path)
    parser.add_argument("--dtype", choices=["f32", "f16"], help="override the matrix type (default f16)")
    parser.add_argument("--seed", type=int, help="override the seed")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("dtype", args.dtype), ("seed", args.seed)) if v is not None}
    print(build_architecture(args.arch, args.output, **overrides))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
