"""An independent NumPy forward pass of the llama architecture.

Written from the architecture itself (RMSNorm, rotary position embeddings in
llama.cpp's "normal" layout of adjacent pairs, grouped-query causal attention,
SwiGLU feed-forward), reading weights straight from the GGUF file with the
gguf package, so that it shares no code with llama.cpp. Float64 throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class LlamaWeights:
    n_layer: int
    n_head: int
    n_head_kv: int
    rope_base: float
    eps: float
    tensors: dict[str, np.ndarray]

    @classmethod
    def from_gguf(cls, path: str | Path) -> "LlamaWeights":
        import gguf

        reader = gguf.GGUFReader(path)

        def field(name: str):
            return reader.fields[name].contents()

        tensors = {t.name: np.asarray(t.data, dtype=np.float64).reshape([int(d) for d in reversed(t.shape)])
                   for t in reader.tensors}
        return cls(
            n_layer=int(field("llama.block_count")),
            n_head=int(field("llama.attention.head_count")),
            n_head_kv=int(field("llama.attention.head_count_kv")),
            rope_base=float(field("llama.rope.freq_base")),
            eps=float(field("llama.attention.layer_norm_rms_epsilon")),
            tensors=tensors,
        )


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """Rotates each adjacent pair (x[2i], x[2i+1]) of every head by pos * base^(-2i/d)."""
    d = x.shape[-1]
    inv_freq = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    angles = positions[:, None] * inv_freq[None, :]  # (T, d/2)
    cos = np.cos(angles)[:, None, :]
    sin = np.sin(angles)[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def forward(w: LlamaWeights, tokens: list[int]) -> np.ndarray:
    """Logits (len(tokens), n_vocab) for a prompt starting at position 0."""
    t = w.tensors
    n_tokens = len(tokens)
    x = t["token_embd.weight"][np.asarray(tokens)]
    n_embd = x.shape[1]
    head_dim = n_embd // w.n_head
    group = w.n_head // w.n_head_kv
    positions = np.arange(n_tokens, dtype=np.float64)
    causal = np.triu(np.full((n_tokens, n_tokens), -np.inf), k=1)
    for i in range(w.n_layer):
        h = rms_norm(x, t[f"blk.{i}.attn_norm.weight"], w.eps)
        q = (h @ t[f"blk.{i}.attn_q.weight"].T).reshape(n_tokens, w.n_head, head_dim)
        k = (h @ t[f"blk.{i}.attn_k.weight"].T).reshape(n_tokens, w.n_head_kv, head_dim)
        v = (h @ t[f"blk.{i}.attn_v.weight"].T).reshape(n_tokens, w.n_head_kv, head_dim)
        q = rope(q, positions, w.rope_base)
        k = rope(k, positions, w.rope_base)
        heads = []
        for hd in range(w.n_head):
            kv = hd // group
            scores = q[:, hd, :] @ k[:, kv, :].T / np.sqrt(head_dim) + causal
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            heads.append(probs @ v[:, kv, :])
        attn = np.concatenate(heads, axis=-1)
        x = x + attn @ t[f"blk.{i}.attn_output.weight"].T
        h = rms_norm(x, t[f"blk.{i}.ffn_norm.weight"], w.eps)
        gate = h @ t[f"blk.{i}.ffn_gate.weight"].T
        up = h @ t[f"blk.{i}.ffn_up.weight"].T
        x = x + (gate / (1.0 + np.exp(-gate)) * up) @ t[f"blk.{i}.ffn_down.weight"].T
    x = rms_norm(x, t["output_norm.weight"], w.eps)
    return x @ t["output.weight"].T
