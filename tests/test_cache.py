"""Prompt caches: longest-prefix lookup, LRU eviction by bytes, restores that change nothing
but the work done, disk entries that outlive their process and damaged files."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from allama import Llama, LlamaDiskCache, LlamaRAMCache, LlamaState

from .tiny_models import GREEDY

N_CTX = 256
PROMPT = "The lighthouse keeper wrote in his log every night about the ships " * 2


def state_of(tokens: list[int], size: int) -> LlamaState:
    return LlamaState.of_sequence(tokens, bytes(size), 0)


# --- the cache objects ------------------------------------------------------------------


@pytest.fixture(params=["ram", "disk"])
def make_cache(request, tmp_path):
    def make(capacity_bytes: int = 2 << 30):
        if request.param == "ram":
            return LlamaRAMCache(capacity_bytes=capacity_bytes)
        return LlamaDiskCache(cache_dir=tmp_path / "cache", capacity_bytes=capacity_bytes)
    return make


def test_lookup_finds_the_longest_common_prefix(make_cache):
    cache = make_cache()
    cache[[1, 2, 3]] = state_of([1, 2, 3], 10)
    cache[[1, 2, 9, 9]] = state_of([1, 2, 9, 9], 10)
    assert cache[[1, 2, 9, 4]].tokens == [1, 2, 9, 9]
    assert cache[[1, 2, 3, 4, 5]].tokens == [1, 2, 3]
    assert [1, 7] in cache and [8] not in cache
    with pytest.raises(KeyError):
        cache[[8, 1]]
    with pytest.raises(TypeError):
        cache[[1]] = b"not a state"


def test_least_recently_used_entries_go_once_bytes_exceed_capacity(make_cache):
    cache = make_cache()
    cache[[1]] = state_of([1], 100)
    one_entry = cache.cache_size
    cache = make_cache(capacity_bytes=2 * one_entry + one_entry // 2)
    for key in ([1], [2]):
        cache[key] = state_of(key, 100)
    assert cache[[1]].tokens == [1]  # now [2] is the least recently used
    cache[[3]] = state_of([3], 100)
    assert [1] in cache and [3] in cache and [2] not in cache
    assert cache.cache_size <= cache.capacity_bytes


@pytest.mark.anyio
async def test_async_lookup_leaves_at_least_one_token_to_evaluate(make_cache):
    cache = make_cache()
    cache[[1, 2, 3]] = state_of([1, 2, 3], 10)
    assert (await cache.lookup([1, 2, 3, 4])).tokens == [1, 2, 3]
    assert await cache.lookup([1, 2, 3, 4], longer_than=3) is None  # nothing better than the engine's
    assert await cache.lookup([1, 2, 3], longer_than=2) is None     # the last token must be evaluated anyway
    assert await cache.lookup([5]) is None


def test_disk_entries_outlive_the_process_that_wrote_them(tmp_path):
    script = textwrap.dedent(f"""
        from allama import LlamaDiskCache, LlamaState
        cache = LlamaDiskCache(cache_dir={str(tmp_path)!r})
        cache[[4, 5, 6]] = LlamaState.of_sequence([4, 5, 6], b"kv" * 50, 7)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    state = LlamaDiskCache(cache_dir=tmp_path)[[4, 5, 6, 7]]
    assert (state.tokens, state.llama_state, state.seed) == ([4, 5, 6], b"kv" * 50, 7)


def test_a_damaged_disk_entry_is_dropped_with_a_warning(tmp_path, caplog):
    cache = LlamaDiskCache(cache_dir=tmp_path)
    cache[[1, 2]] = state_of([1, 2], 100)
    cache[[1, 2, 3]] = state_of([1, 2, 3], 100)
    damaged = tmp_path / LlamaDiskCache._name((1, 2, 3))
    damaged.write_bytes(damaged.read_bytes()[:-20])
    (tmp_path / "unrelated.txt").write_text("not ours")
    with caplog.at_level(logging.WARNING, logger="allama.cache"):
        assert cache[[1, 2, 3, 4]].tokens == [1, 2]  # the next best entry
    assert "truncated" in caplog.text and not damaged.exists()
    assert (tmp_path / "unrelated.txt").exists()


# --- completions with a cache ------------------------------------------------------------


def fresh_llama(path, **kw) -> Llama:
    return Llama(str(path), n_ctx=N_CTX, n_parallel=2, n_batch=64, n_threads=2, n_threads_batch=2, **kw)


@pytest.fixture(scope="module")
def reference(llama_f32_path):
    model = fresh_llama(llama_f32_path, n_keep=0)
    yield model
    model.close()


async def complete(llm: Llama, prompt: str, max_tokens: int = 8) -> dict:
    return await llm.create_completion(prompt, max_tokens=max_tokens, ignore_eos=True, **GREEDY)


async def restored_run(llama_f32_path, cache, prompt: str) -> tuple[str, int, int]:
    """A new engine (nothing kept) with `cache`: (text, prompt tokens evaluated, tokens restored)."""
    llm = fresh_llama(llama_f32_path)
    llm.set_cache(cache)
    try:
        out = await complete(llm, prompt)
        stats = llm.stats()
    finally:
        await llm.aclose()
    return out["choices"][0]["text"], stats.prompt_tokens_evaluated, stats.prompt_tokens_restored


async def fill(llama_f32_path, cache) -> dict:
    llm = fresh_llama(llama_f32_path)
    llm.set_cache(cache)
    try:
        return await complete(llm, PROMPT)
    finally:
        await llm.aclose()


@pytest.mark.anyio
async def test_a_cache_hit_restores_and_changes_only_the_work(llama_f32_path, reference):
    cache = LlamaRAMCache()
    first = await fill(llama_f32_path, cache)
    assert len(cache) == 1
    (key,) = cache.cache_state
    follow_up = PROMPT + first["choices"][0]["text"] + " and the storm"
    text, evaluated, restored = await restored_run(llama_f32_path, cache, follow_up)
    n_prompt = len(reference.tokenize(follow_up.encode()))
    assert restored > len(reference.tokenize(PROMPT.encode())) - 2
    assert evaluated == n_prompt - restored < n_prompt // 2
    assert text == (await complete(reference, follow_up))["choices"][0]["text"]
    assert len(cache) == 2 and key in cache.cache_state  # prompt + completion stored again


@pytest.mark.anyio
async def test_the_engine_own_prefix_beats_a_shorter_cached_one(llama_f32_path):
    cache = LlamaRAMCache()
    llm = fresh_llama(llama_f32_path)
    llm.set_cache(cache)
    try:
        await complete(llm, PROMPT)
        await complete(llm, PROMPT + " again")
        assert llm.stats().prompt_tokens_restored == 0  # the kept sequence served it
    finally:
        await llm.aclose()


@pytest.mark.anyio
async def test_a_disk_cache_serves_a_new_instance(llama_f32_path, reference, tmp_path):
    await fill(llama_f32_path, LlamaDiskCache(cache_dir=tmp_path))
    text, evaluated, restored = await restored_run(llama_f32_path, LlamaDiskCache(cache_dir=tmp_path), PROMPT + " once")
    assert restored > 0 and evaluated == len(reference.tokenize((PROMPT + " once").encode())) - restored
    assert text == (await complete(reference, PROMPT + " once"))["choices"][0]["text"]


@pytest.mark.anyio
async def test_a_truncated_cache_file_is_dropped_and_the_result_stays_right(llama_f32_path, reference, tmp_path,
                                                                            caplog):
    await fill(llama_f32_path, LlamaDiskCache(cache_dir=tmp_path))
    (entry,) = list(tmp_path.iterdir())
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="allama.cache"):
        text, _, restored = await restored_run(llama_f32_path, LlamaDiskCache(cache_dir=tmp_path), PROMPT + " once")
    assert restored == 0
    assert "dropping cache file" in caplog.text and not entry.exists()
    assert text == (await complete(reference, PROMPT + " once"))["choices"][0]["text"]


@pytest.mark.anyio
async def test_a_session_turn_restores_from_the_cache_too(llama_f32_path, reference):
    cache = LlamaRAMCache()
    await fill(llama_f32_path, cache)
    llm = fresh_llama(llama_f32_path)
    llm.set_cache(cache)
    try:
        async with llm.session() as session:
            out = await complete(session, PROMPT + " at sea")
        assert llm.stats().prompt_tokens_restored > 0
    finally:
        await llm.aclose()
    assert out["choices"][0]["text"] == (await complete(reference, PROMPT + " at sea"))["choices"][0]["text"]


def test_set_cache_takes_an_allama_cache(llama_f32_path, reference):
    with pytest.raises(TypeError, match="LlamaRAMCache"):
        reference.set_cache({})
    reference.set_cache(None)


@pytest.mark.anyio
async def test_disk_io_runs_in_worker_threads(llama_f32_path, tmp_path, monkeypatch):
    import threading

    threads: list[str] = []
    for name in ("_lookup", "_store"):
        original = getattr(LlamaDiskCache, name)

        def recorded(self, *args, _original=original):
            threads.append(threading.current_thread().name)
            return _original(self, *args)

        monkeypatch.setattr(LlamaDiskCache, name, recorded)
    await fill(llama_f32_path, LlamaDiskCache(cache_dir=tmp_path))
    assert len(threads) == 2
    assert threading.main_thread().name not in threads and "allama-decode" not in threads
