"""A model's layers spread over two RPC workers (`allama rpc-server`), each on a host of its own:
the same greedy text as on this machine alone, one request at a time and 8 at once, with the
weights on the workers' hosts and the traffic on their links."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import anyio
import numpy as np
import pytest

from allama import Llama, _native
from allama.testing.model_builder import build_llama
from tests.tiny_models import GREEDY, TINY_LLAMA

from ..paths import REPO_ROOT
from .workers import ENV, HOST_KINDS, hosts, worker

pytestmark = pytest.mark.anyio

PROMPTS = [f"Story {i}: once upon a time there was" for i in range(8)]
OPTIONS = {"n_ctx": 256, "n_parallel": 8, "n_threads": 1, "n_threads_batch": 1}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def one_at_a_time(llm: Llama) -> list[str]:
    return [(await llm.create_completion(p, max_tokens=12, ignore_eos=True, **GREEDY))["choices"][0]["text"]
            for p in PROMPTS]


async def all_at_once(llm: Llama) -> list[str]:
    texts = [""] * len(PROMPTS)

    async def one(i: int) -> None:
        done = await llm.create_completion(PROMPTS[i], max_tokens=12, ignore_eos=True, **GREEDY)
        texts[i] = done["choices"][0]["text"]

    async with anyio.create_task_group() as tg:
        for i in range(len(PROMPTS)):
            tg.start_soon(one, i)
    return texts


@pytest.mark.parametrize("host_kind", HOST_KINDS)
async def test_split_over_two_workers_writes_what_the_model_writes_alone(llama_f32_path: Path, host_kind: str,
                                                                          tmp_path: Path) -> None:
    async with Llama(str(llama_f32_path), **OPTIONS) as local:
        expected = await one_at_a_time(local)
    assert len(set(expected)) > 1  # the prompts lead to different texts, so a mix-up would show

    with hosts(host_kind, 2) as (host_a, host_b), worker(host_a, tmp_path) as a, worker(host_b, tmp_path) as b:
        sent_before = [host_a.bytes_sent_to(), host_b.bytes_sent_to()]
        split = {"rpc_servers": [a.endpoint, b.endpoint], "n_gpu_layers": -1}
        async with Llama(str(llama_f32_path), **split, **OPTIONS) as llm:
            buffers = llm.model.buffer_types  # "RPC<device>[host:port]" names a worker's device
            on_workers = [sum(size for name, size in buffers.items() if name.endswith(f"[{w.endpoint}]"))
                          for w in (a, b)]
            assert all(size > 0 for size in on_workers), buffers
            assert await one_at_a_time(llm) == expected
            assert await all_at_once(llm) == expected
            assert llm.model.lost_worker is None
        if host_kind == "netns":  # each worker's weights went over its own link
            for host, before, size in zip((host_a, host_b), sent_before, on_workers):
                assert host.bytes_sent_to() - before > size


async def test_a_worker_can_serve_one_model_after_another(llama_f32_path: Path, tmp_path: Path) -> None:
    """A worker serves one client at a time; once a model is closed the next one can use it."""
    with hosts("loopback", 1) as (host,), worker(host, tmp_path) as w:
        for _ in range(2):
            async with Llama(str(llama_f32_path), rpc_servers=w.endpoint, n_gpu_layers=-1, **OPTIONS) as llm:
                done = await llm.create_completion(PROMPTS[0], max_tokens=4, ignore_eos=True, **GREEDY)
                assert done["usage"]["completion_tokens"] == 4


async def test_a_worker_with_a_cache_is_sent_hashes_instead_of_weights(models_dir: Path, tmp_path: Path) -> None:
    """`--cache`: weights over 10 MB that a worker received are kept by hash, so loading the
    same model again sends the hash, not the tensor (the 16 MB output matrix here)."""
    model = build_llama(models_dir / "llama-f32-wide.gguf", dataclasses.replace(TINY_LLAMA, n_embd=128, n_head=4))[0]
    cache = tmp_path / "cache"
    with hosts("netns", 1) as (host,), worker(host, tmp_path, cache=cache) as w:
        sent = []
        texts = []
        for _ in range(2):
            before = host.bytes_sent_to()
            async with Llama(str(model), rpc_servers=w.endpoint, n_gpu_layers=-1, **OPTIONS) as llm:
                sent.append(host.bytes_sent_to() - before)
                done = await llm.create_completion(PROMPTS[0], max_tokens=8, ignore_eos=True, **GREEDY)
                texts.append(done["choices"][0]["text"])
            assert any(cache.iterdir())
    assert texts[0] == texts[1]
    assert sent[0] - sent[1] > 16_000_000, sent


CONTEXTS_AT_ONCE = """
import sys, threading
import numpy as np
from allama import _native
from tests.greedy import greedy_tokens

def run(model, prompt, out, i):
    p = _native.ContextParams(); p.n_ctx = 128; p.n_batch = p.n_ubatch = 32; p.n_seq_max = 1; p.n_threads = 1
    ctx = _native.Context(model, p)
    batch = _native.Batch(32)
    batch.add_tokens(prompt, 0, 0, True)
    ctx.decode(batch)
    out[i] = greedy_tokens(ctx, len(prompt), 24)
    ctx.close()

def texts(model):
    out = [None] * 4
    threads = [threading.Thread(target=run, args=(model, [1, 100 + 7 * i, 200 + i], out, i)) for i in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    return out

local = texts(_native.Model.load(MODEL))
p = _native.ModelParams(); p.n_gpu_layers = -1; p.rpc_servers = WORKERS
split = texts(_native.Model.load(MODEL, p))
print("same" if split == local else f"differ: {split} != {local}")
"""


def test_contexts_of_a_split_model_decode_from_several_threads_at_once(llama_f32_path: Path, tmp_path: Path) -> None:
    """ggml's RPC client has one connection per worker for all of a model's contexts and does
    not take turns on it; allama does, so four threads decoding at once get what they would
    alone instead of garbled messages (and a process abort)."""
    with hosts("loopback", 2) as (host_a, host_b), worker(host_a, tmp_path) as a, worker(host_b, tmp_path) as b:
        code = CONTEXTS_AT_ONCE.replace("MODEL", repr(str(llama_f32_path))).replace(
            "WORKERS", repr([a.endpoint, b.endpoint]))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV,
                              cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "same", done.stdout[-2000:]



def logits_along(model, tokens: list[int]) -> np.ndarray:
    """The logits after each of `tokens`, all decoded in one batch (teacher forcing)."""
    params = _native.ContextParams()
    params.n_ctx = params.n_batch = params.n_ubatch = 64
    params.n_seq_max, params.n_threads, params.n_threads_batch = 1, 1, 1
    ctx = _native.Context(model, params)
    try:
        batch = _native.Batch(64)
        for position, token in enumerate(tokens):
            batch.add(token, position, 0, True)
        ctx.decode(batch)
        return np.stack([ctx.logits(i) for i in range(len(tokens))])
    finally:
        ctx.close()


@pytest.mark.parametrize(("arch", "ftype"), [("qwen3", "Q4_K_M"), ("qwen2", "Q8_0"), ("gemma3", "Q4_K_M")])
def test_a_quantized_model_split_over_workers_computes_what_it_computes_alone(
        architecture_model, arch: str, ftype: str, tmp_path: Path) -> None:
    """Real users' models are quantized. The workers run the quantized layers with the plain
    CPU kernels, while this machine repacks its own weights for faster ones (CPU_REPACK), so
    the two round differently: the logits along one text agree closely, and the greedy choice
    differs only where the two best logits were within that rounding."""
    path = str(architecture_model(arch, ftype))
    local_model = _native.Model.load(path)
    vocab = _native.Vocab(local_model)
    tokens = vocab.tokenize(b"Once upon a time there was a little fox who lived in the woods", True, False)
    local = logits_along(local_model, tokens)
    with hosts("loopback", 2) as (host_a, host_b), worker(host_a, tmp_path) as a, worker(host_b, tmp_path) as b:
        params = _native.ModelParams()
        params.n_gpu_layers, params.rpc_servers = -1, [a.endpoint, b.endpoint]
        split_model = _native.Model.load(path, params)
        split = logits_along(split_model, tokens)
        split_model.close()
    spread = local.max(axis=1) - local.min(axis=1)
    assert np.all(np.abs(split - local).max(axis=1) < 0.05 * spread), np.abs(split - local).max(axis=1) / spread
    for row_local, row_split in zip(local, split):
        best, chosen = int(np.argmax(row_local)), int(np.argmax(row_split))
        if best != chosen:  # a near tie, decided by rounding
            assert row_local[best] - row_local[chosen] < 0.05 * (row_local.max() - row_local.min())
