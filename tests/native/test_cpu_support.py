"""CPU support: the default build keeps llama.cpp's AMX buffer type out (it crashes quantized
models on Sapphire Rapids-class CPUs), keeps weight repacking (a large speed-up for quantized
matmuls), and quantized models run on the CPU at hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import allama
from allama import _native
from allama.testing.model_builder import LlamaConfig, build_llama

WIDE = LlamaConfig(n_embd=256, n_ff=512, n_layer=1, n_head=4, n_head_kv=2)


@pytest.fixture(scope="module")
def quantized(models_dir: Path) -> dict[str, Path]:
    src = build_llama(models_dir / "cpu-wide-f32.gguf", WIDE)[0]
    return {t: allama.quantize(src, models_dir / f"cpu-wide-{t}.gguf", t) for t in ("Q4_0", "Q8_0", "Q4_K_M")}


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return next((set(line.split(":", 1)[1].split()) for line in text.splitlines()
                 if line.startswith(("flags", "Features"))), set())


def test_the_amx_buffer_type_is_not_built():
    assert "AMX" not in _native.cpu_extra_buffer_types()
    assert "AMX_INT8" not in _native.cpu_features()


def test_weight_repacking_stays_on():
    assert _native.cpu_features().get("REPACK") == "1"
    assert "CPU_REPACK" in _native.cpu_extra_buffer_types()


def test_the_build_uses_only_instructions_this_cpu_has():
    flags = cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags to compare with")
    features = _native.cpu_features()
    for feature, flag in [("AVX", "avx"), ("AVX2", "avx2"), ("FMA", "fma"), ("F16C", "f16c"),
                          ("AVX512", "avx512f"), ("AVX512_VNNI", "avx512_vnni"), ("AVX512_BF16", "avx512_bf16")]:
        if features.get(feature) == "1":
            assert flag in flags, f"built with {feature}, which this CPU lacks"


@pytest.mark.parametrize("ftype", ["Q4_0", "Q8_0", "Q4_K_M"])
def test_quantized_weights_never_go_to_amx_and_decode(quantized, ftype):
    model = _native.Model.load(str(quantized[ftype]))
    buffers = model.buffer_types
    assert buffers and "AMX" not in buffers, buffers
    assert sum(buffers.values()) >= model.size * 0.9
    if ftype == "Q4_0" and {"avx2"} <= cpu_flags():
        assert buffers.get("CPU_REPACK", 0) > 0, buffers  # Q4_0 repacks for AVX2 and newer
    ctx = _native.Context(model)
    batch = _native.Batch(8)
    batch.add_tokens([1, 450, 4996, 17354], 0, 0, True)
    ctx.decode(batch)
    assert np.isfinite(ctx.logits(-1)).all()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_quantized_models_serve_concurrent_requests(quantized):
    async with await allama.Llama.load(str(quantized["Q4_K_M"]), n_ctx=128, n_parallel=4) as llm:
        import anyio

        results: list[str] = []

        async def one(i: int) -> None:
            out = await llm.create_completion(f"Request {i}", max_tokens=8, temperature=0.0)
            results.append(out["choices"][0]["text"])

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(one, i)
        assert len(results) == 4


def test_a_cpu_without_the_builds_instructions_gets_an_import_error_not_sigill():
    import os
    import subprocess
    import sys

    built = [f for f in ("AVX2", "AVX", "SSSE3") if _native.cpu_features().get(f) == "1"]
    if not built:
        pytest.skip("this build uses none of the checked x86 instruction sets")
    env = {**os.environ, "ALLAMA_TEST_HIDE_CPU_FEATURES": built[0], "SKBUILD_EDITABLE_SKIP": "1"}
    proc = subprocess.run([sys.executable, "-c", "import allama"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "ImportError" in proc.stderr and f"built for a CPU with {built[0]}" in proc.stderr
    assert "GGML_NATIVE=off" in proc.stderr
