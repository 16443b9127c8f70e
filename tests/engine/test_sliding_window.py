"""Sliding-window attention (the tiny Gemma 3: layer 0 attends to the last 32 positions, layer 1
to all, in llama.cpp's iSWA cache): the window is real, and the engine's prefix reuse never
hands a request a prefix whose window llama.cpp has already dropped."""

from __future__ import annotations

import numpy as np
import pytest

from allama import Llama, _native
from allama.testing.architectures import Gemma3Config, build_gemma3

from ..greedy import engine_greedy, reference_decode

pytestmark = pytest.mark.anyio

WINDOW = Gemma3Config().sliding_window


@pytest.fixture
def anyio_backend():
    return "asyncio"


def last_logits(model: _native.Model, prompt: list[int]) -> np.ndarray:
    params = _native.ContextParams()
    params.n_ctx = params.n_batch = params.n_ubatch = 256
    params.n_threads = params.n_threads_batch = 1
    ctx = _native.Context(model, params)
    batch = _native.Batch(256)
    batch.add_tokens(prompt, 0, 0, True)
    ctx.decode(batch)
    out = ctx.logits(-1).copy()
    ctx.close()
    return out


def test_the_window_limits_attention(models_dir):
    """The same weights with and without a window (one rotary base for all layers, so that only
    the window differs) agree on prompts within the window and part beyond it."""
    config = Gemma3Config(rope_freq_base_swa=Gemma3Config().rope_freq_base)
    windowed = _native.Model.load(str(build_gemma3(models_dir / "gemma3-window.gguf", config)))
    unwindowed = _native.Model.load(str(build_gemma3(models_dir / "gemma3-nowindow.gguf",
                                                      Gemma3Config(rope_freq_base_swa=config.rope_freq_base,
                                                                   sliding_window=0))))
    assert windowed.n_swa == WINDOW and unwindowed.n_swa == 0
    rng = np.random.default_rng(3)
    short = [1] + rng.integers(100, 30000, size=WINDOW - 2).tolist()
    long = short + rng.integers(100, 30000, size=3 * WINDOW).tolist()
    assert np.abs(last_logits(windowed, short) - last_logits(unwindowed, short)).max() < 1e-3
    assert np.abs(last_logits(windowed, long) - last_logits(unwindowed, long)).max() > 0.1


async def test_prefix_reuse_needs_the_window_before_the_prefix(architecture_model):
    """A kept sequence whose oldest positions llama.cpp reused for another sequence's tokens (SWA
    layers drop what leaves the window) cannot give a prefix that needs them: the request is
    evaluated afresh, and still equals a plain decode. Its whole length stays reusable."""
    path = architecture_model("gemma3")
    rng = np.random.default_rng(5)
    first = [1] + rng.integers(100, 30000, size=150).tolist()
    filler = rng.integers(100, 30000, size=180).tolist()  # no BOS: shares nothing with `first`
    # swa_full=False: the SWA layers' cache has 256 cells (llama.cpp's minimum), the others' 1024
    async with Llama(str(path), n_ctx=256, n_parallel=1, n_keep=2, kv_size=1024, swa_full=False, n_batch=64,
                     n_threads=1, n_threads_batch=1) as llm:
        assert llm._model.n_swa == WINDOW
        kept = first + await engine_greedy(llm, first, 8)
        await engine_greedy(llm, filler, 8)  # fills the cache: the first sequence's old cells are reused
        ctx = llm._scheduler.ctx
        held = [s for s in range(ctx.n_seq_max) if ctx.seq_pos_max(s) == len(kept) - 2]
        assert held and ctx.seq_pos_min(held[0]) > 60  # its start left the SWA cache

        # diverges at token 60: the window before it is gone, so nothing is reused
        diverging = first[:60] + rng.integers(100, 30000, size=20).tolist()
        before = llm.stats()
        got = await engine_greedy(llm, diverging, 8)
        assert llm.stats().prompt_tokens_reused == before.prompt_tokens_reused
        assert got == reference_decode(llm._model, diverging, 8)[0]

        # extends the whole kept sequence (all but its last token, which was never evaluated)
        extending = kept + rng.integers(100, 30000, size=10).tolist()
        before = llm.stats()
        got = await engine_greedy(llm, extending, 8)
        assert llm.stats().prompt_tokens_reused - before.prompt_tokens_reused == len(kept) - 1
        assert got == reference_decode(llm._model, extending, 8)[0]
