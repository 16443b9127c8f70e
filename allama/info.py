"""What a user reports with a bug: the model (architecture, size, quantization, template,
special tokens) and the machine (CPU features found, those llama.cpp was built with, and
the buffer types the weights went to). `allama info MODEL` prints it."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from allama import _native
from allama.quantization import ftype_name

# /proc/cpuinfo flags that decide which llama.cpp CPU kernels can run.
_CPU_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_vbmi", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",  # x86-64
    "asimd", "asimddp", "asimdhp", "i8mm", "sve", "sve2", "sme", "bf16",  # arm64 (Features)
)


def cpu_info() -> dict[str, Any]:
    """The CPU (model name, the kernel-relevant flags it has) and what llama.cpp uses of it."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name in ("", platform.machine()):
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {
        "cpu": name,
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "cpu_flags": [f for f in _CPU_FLAGS if f in flags],
        "llama_cpp_cpu_features": _native.cpu_features(),
        "cpu_extra_buffer_types": _native.cpu_extra_buffer_types(),
        "devices": _native.devices(),
        "llama_cpp": _native.llama_cpp_version(),
    }


def model_info(path: str | os.PathLike[str], *, template_lines: int = 8) -> dict[str, Any]:
    """A model's facts, read by loading it (memory-mapped) the way Llama does on this machine."""
    model = _native.Model.load(os.fspath(path))
    try:
        vocab = _native.Vocab(model)
        meta = model.metadata
        template = model.chat_template(None)
        special = {}
        for role in ("bos", "eos", "eot", "sep", "nl", "pad", "fim_pre", "fim_suf", "fim_mid"):
            token = getattr(vocab, role)
            if token >= 0:
                special[role] = {"id": token, "text": vocab.token_text(token).decode("utf-8", "replace")}
        return {
            "path": os.fspath(path),
            "architecture": meta.get("general.architecture", "?"),
            "name": meta.get("general.name"),
            "description": model.description,
            "parameters": model.n_params,
            "size_bytes": model.size,
            "quantization": ftype_name(model.ftype),
            "context_length": model.n_ctx_train,
            "embedding_length": model.n_embd,
            "layers": model.n_layer,
            "heads": model.n_head,
            "kv_heads": model.n_head_kv,
            "sliding_window": model.n_swa,
            "recurrent": model.is_recurrent,
            "hybrid": model.is_hybrid,
            "vocab_size": vocab.n_tokens,
            "special_tokens": special,
            "add_bos": vocab.add_bos,
            "chat_template": "\n".join(template.splitlines()[:template_lines]) if template else None,
            "buffer_types": model.buffer_types,
        }
    finally:
        model.close()


def format_info(model: dict[str, Any] | None, cpu: dict[str, Any]) -> str:
    """The report as aligned text lines."""
    lines: list[str] = []

    def row(key: str, value: Any) -> None:
        lines.append(f"{key:<22} {value}")

    if model is not None:
        row("model", model["path"])
        row("architecture", model["architecture"] + (f" ({model['name']})" if model["name"] else ""))
        row("parameters", f"{model['parameters'] / 1e6:,.1f}M ({model['size_bytes'] / 2**20:,.1f} MiB)")
        row("quantization", model["quantization"])
        row("context length", model["context_length"])
        row("layers / heads / kv", f"{model['layers']} / {model['heads']} / {model['kv_heads']}")
        if model["sliding_window"]:
            row("sliding window", model["sliding_window"])
        if model["recurrent"] or model["hybrid"]:
            row("memory", "recurrent" if model["recurrent"] else "hybrid (attention + recurrent)")
        row("vocabulary", f"{model['vocab_size']} tokens, add_bos={model['add_bos']}")
        row("special tokens", ", ".join(f"{k}={v['id']} {v['text']!r}" for k, v in model["special_tokens"].items()))
        row("weights in", ", ".join(f"{k} {v / 2**20:,.1f} MiB" for k, v in sorted(model["buffer_types"].items())))
        if model["chat_template"]:
            lines.append("chat template (first lines):")
            lines.extend("    " + line for line in model["chat_template"].splitlines())
        else:
            row("chat template", "none (pass chat_format=...)")
    row("cpu", f"{cpu['cpu']} ({cpu['machine']}, {cpu['logical_cores']} logical cores)")
    row("cpu flags", " ".join(cpu["cpu_flags"]) or "(unknown)")
    row("llama.cpp", cpu["llama_cpp"])
    row("llama.cpp cpu features", " ".join(k for k, v in cpu["llama_cpp_cpu_features"].items() if v not in ("0", "")))
    row("cpu buffer types", " ".join(["CPU", *cpu["cpu_extra_buffer_types"]]))
    row("devices", "; ".join(cpu["devices"]))
    return "\n".join(lines)
