"""Every tiny architecture (allama.testing.architectures) in F16, Q8_0 and Q4_K_M through the
engine: greedy continuations of one request alone and of 8 concurrent requests equal a plain
one-sequence native decode of the same model, or part from it only where the reference's best
logit and the engine's choice are within TOLERANCE (a rounding tie, reported as a property).

Runs on asyncio only: the matrix is about models, the anyio backends are covered elsewhere."""

from __future__ import annotations

import anyio
import pytest

from allama import Llama
from allama.testing.architectures import ARCHITECTURES

from ..conftest import ARCHITECTURE_FTYPES
from ..greedy import engine_greedy, reference_decode

pytestmark = pytest.mark.anyio

N_TOKENS = 16
N_CONCURRENT = 8
# Logit distance (the logits' standard deviation is about 4) within which a divergence counts as
# a tie broken by rounding. A batch of another size or composition moves F16 logits by about 0.01;
# Q8_0 ones by up to about 0.05 (MoE: experts see other row groupings); with Q4_K_M, llama.cpp's
# CPU kernels for one or two rows and for more rows give logits up to about 0.25 apart.
TOLERANCE = {"F16": 0.05, "Q8_0": 0.15, "Q4_K_M": 0.35}

_WORDS = ("the old lighthouse keeper counted ships that passed in the night while storms rolled over "
          "grey water and gulls cried above the rocks where children once played with kites made of "
          "paper string and bamboo sticks their laughter carried by the wind toward the village on the "
          "hill where bakers rose before dawn to knead bread for markets that opened when church bells "
          "rang seven times across fields of barley and rye bordered by stone walls older than anyone "
          "remembered and covered in moss lichen and small blue flowers").split()


@pytest.fixture
def anyio_backend():
    return "asyncio"


def prompts(llm: Llama) -> list[list[int]]:
    """N_CONCURRENT different prompts of 3 to about 100 tokens (3 times gemma3's window)."""
    out = []
    for i in range(N_CONCURRENT):
        n_words = 2 + 12 * i  # 2 to 86 words
        text = " ".join(_WORDS[(i * 11 + k) % len(_WORDS)] for k in range(n_words))
        out.append(llm.tokenize(text.encode(), add_bos=True))
    return out


def check_against_reference(llm: Llama, prompt: list[int], got: list[int], tolerance: float, label: str,
                            record_property) -> None:
    """got equals the native one-sequence greedy decode of prompt, or parts from it at a tie."""
    expected, gaps = reference_decode(llm._model, prompt, len(got), compare=got)
    if got == expected:
        return
    k = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
    record_property(f"divergence {label}", f"step {k}, reference logit gap {gaps[k]:.6f}")
    assert gaps[k] <= tolerance, (
        f"{label}: the engine chose {got[k]} at step {k} where the reference chose {expected[k]}; "
        f"the reference's logit of the engine's token is {gaps[k]:.4f} below its best (tolerance {tolerance})")


@pytest.mark.parametrize("ftype", ARCHITECTURE_FTYPES)
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
async def test_greedy_alone_and_concurrent_match_native_decode(arch, ftype, architecture_model, record_property):
    path = architecture_model(arch, ftype)
    llm = await Llama.load(str(path), n_ctx=256, n_parallel=N_CONCURRENT, n_batch=32, n_threads=1,
                           n_threads_batch=1)
    async with llm:
        batch = prompts(llm)
        alone = await engine_greedy(llm, batch[-1], N_TOKENS)
        together: list[list[int] | None] = [None] * N_CONCURRENT

        async def run(i: int) -> None:
            together[i] = await engine_greedy(llm, batch[i], N_TOKENS)

        async with anyio.create_task_group() as tg:
            for i in range(N_CONCURRENT):
                tg.start_soon(run, i)

        tolerance = TOLERANCE[ftype]
        check_against_reference(llm, batch[-1], alone, tolerance, f"{arch}/{ftype} alone", record_property)
        for i, got in enumerate(together):
            check_against_reference(llm, batch[i], got, tolerance, f"{arch}/{ftype} concurrent #{i}", record_property)
        if arch == "gemma3":
            # the iSWA cache is in use, and prompts reach well past the window
            assert llm._model.n_swa == 32
            assert max(len(p) for p in batch) > 2 * llm._model.n_swa
