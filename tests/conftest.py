"""Shared fixtures: tiny GGUF models built once per test session."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .paths import REPO_ROOT

# The model builder and the tokenizer tests read llama.cpp's vocab files from the
# vendored tree; an installed (non-editable) allama cannot find it on its own.
os.environ.setdefault("ALLAMA_LLAMA_CPP_DIR", str(REPO_ROOT / "vendor" / "llama.cpp"))

# Import the extension before any test captures output: with an editable install
# built with editable.rebuild=true, this first import is what rebuilds it.
from allama import _native  # noqa: E402,F401
from allama import Llama  # noqa: E402
from allama.testing.model_builder import BertConfig, build_bert, build_llama  # noqa: E402

# tests/engine still imports these two from here (every other test module imports their modules)
from .native_context import make_context  # noqa: E402,F401
from .tiny_models import TINY_LLAMA  # noqa: E402


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    """Async tests (marked anyio) run under both backends: the API is built on anyio."""
    return request.param


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def llama_f32_path(models_dir: Path) -> Path:
    """The tiny llama (F32 weights): exact-comparison tests use this one."""
    return build_llama(models_dir / "llama-f32.gguf", TINY_LLAMA)[0]


@pytest.fixture(scope="session")
def llama_f16_path(models_dir: Path) -> Path:
    return build_llama(models_dir / "llama-f16.gguf", dataclasses.replace(TINY_LLAMA, dtype="f16"))[0]


@pytest.fixture(scope="session")
def bert_path(models_dir: Path) -> Path:
    return build_bert(models_dir / "bert.gguf", BertConfig())[0]


@pytest.fixture(scope="session")
def qwen2vl_paths(models_dir: Path) -> tuple[Path, Path]:
    """(text model, projector): the tiny Qwen2-VL pair (M-RoPE, F32 weights, Qwen2 vocabulary).
    A w x h image takes about (w / 8) x (h / 8) tokens, at least 8 (Qwen2VLProjectorConfig.n_tokens
    says exactly), and max of the two in positions: keep test images small."""
    from allama.testing.model_builder import (Qwen2VLConfig, Qwen2VLProjectorConfig, build_qwen2vl,
                                              build_qwen2vl_projector)

    text = Qwen2VLConfig()
    model = build_qwen2vl(models_dir / "qwen2vl.gguf", text)
    return model, build_qwen2vl_projector(models_dir / "qwen2vl-projector.gguf", Qwen2VLProjectorConfig(), text)


@pytest.fixture(scope="session")
def qwen25vl_paths(models_dir: Path, qwen2vl_paths: tuple[Path, Path]) -> tuple[Path, Path]:
    """(text model, projector): qwen2vl_paths' text model (Qwen2.5-VL's text side is llama.cpp arch
    qwen2vl too) with a tiny "qwen2.5vl_merger" projector. Images take tokens and positions as
    with qwen2vl_paths; the first block attends within 112 x 112-pixel windows, the second to all."""
    from allama.testing.model_builder import Qwen2VLConfig, Qwen25VLProjectorConfig, build_qwen25vl_projector

    path = build_qwen25vl_projector(models_dir / "qwen25vl-projector.gguf", Qwen25VLProjectorConfig(), Qwen2VLConfig())
    return qwen2vl_paths[0], path


@pytest.fixture(scope="module")
def llm_options() -> dict[str, Any]:
    """Llama(...)'s keyword arguments for the module's `llm`; a module overrides this fixture
    to load the tiny model differently (a small n_ctx, more parallel sequences, adapters)."""
    return {"n_ctx": 512, "n_parallel": 4, "n_threads": 2, "n_threads_batch": 2}


@pytest.fixture(scope="module")
def llm(llama_f32_path: Path, llm_options: dict[str, Any]) -> Iterator[Llama]:
    """The tiny llama as an allama.Llama, shared by the tests of a module and closed after them."""
    model = Llama(str(llama_f32_path), **llm_options)
    yield model
    model.close()


@pytest.fixture(scope="session")
def llama_model(llama_f32_path: Path):
    from allama import _native

    return _native.Model.load(str(llama_f32_path))


@pytest.fixture(scope="session")
def llama_vocab(llama_model):
    from allama import _native

    return _native.Vocab(llama_model)


ARCHITECTURE_FTYPES = ("F16", "Q8_0", "Q4_K_M")


@pytest.fixture(scope="session")
def architecture_model(models_dir: Path):
    """get(arch, ftype) -> path: the tiny model of `arch` (a key of
    allama.testing.architectures.ARCHITECTURES) built once as F16, and quantized once to each
    ftype ("Q8_0", "Q4_K_M", ...) asked for."""
    from allama import quantize
    from allama.testing.architectures import build_architecture

    built: dict[tuple[str, str], Path] = {}

    def get(arch: str, ftype: str = "F16") -> Path:
        key = (arch, ftype)
        if key not in built:
            if ftype == "F16":
                built[key] = build_architecture(arch, models_dir / f"{arch}-f16.gguf")
            else:
                built[key] = quantize(get(arch), models_dir / f"{arch}-{ftype.lower()}.gguf", ftype, nthread=1)
        return built[key]

    return get
