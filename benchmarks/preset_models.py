"""The benchmarks' models: allama.testing's llama presets, built once into .cache/."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def preset_model(preset: str) -> Path:
    """.cache/bench-<preset>.gguf, built from LLAMA_PRESETS[preset] when missing."""
    from allama.testing.model_builder import LLAMA_PRESETS, build_llama

    path = ROOT / ".cache" / f"bench-{preset}.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build_llama(path, LLAMA_PRESETS[preset])
    return path
