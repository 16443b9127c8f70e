"""Every benchmark script runs at tiny scale (a smoke test, not a timing)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from .deploy.balancer import haproxy_binary
from .paths import REPO_ROOT


def smoke_run(script: str, cwd, *extra: str) -> subprocess.CompletedProcess[str]:
    """benchmarks/<script> --smoke, run in `cwd`; fails the test unless it exits 0."""
    run = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / script), "--smoke", *extra],
                         capture_output=True, text=True, timeout=300, cwd=cwd)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_concurrency_benchmark_smoke(tmp_path):
    run = smoke_run("concurrency.py", tmp_path)
    assert "| 1 |" in run.stdout and "| 2 |" in run.stdout
    assert "per generated token" in run.stdout


def test_embeddings_benchmark_smoke(tmp_path):
    run = smoke_run("embeddings.py", tmp_path)
    assert "| 1 |" in run.stdout and "| 4 |" in run.stdout


def test_speculative_benchmark_smoke(tmp_path):
    run = smoke_run("speculative.py", tmp_path)
    assert "| prompt-lookup |" in run.stdout and "| oracle |" in run.stdout


def test_kv_memory_benchmark_smoke(tmp_path):
    run = smoke_run("kv_memory.py", tmp_path)
    assert "| allama |" in run.stdout and "KV cache MiB" in run.stdout


def test_overhead_benchmark_smoke(tmp_path):
    plot = tmp_path / "overhead.png"
    run = smoke_run("overhead.py", tmp_path, "--plot", str(plot), "--json", str(tmp_path / "runs.json"))
    assert "| 1 |" in run.stdout and "| 4 |" in run.stdout
    assert "run 1 allama-server" in run.stderr  # the server was measured too
    assert "run 1 decode-loop" in run.stderr and "allama / decode-loop" in run.stdout
    assert plot.stat().st_size > 0 and (tmp_path / "runs.json").stat().st_size > 0


def test_engine_share_benchmark_smoke(tmp_path):
    run = smoke_run("engine_share.py", tmp_path, "--loops", "asyncio,uvloop", "--json", str(tmp_path / "rounds.json"))
    assert "| 1 | uvloop |" in run.stdout and "| 4 | asyncio |" in run.stdout
    assert "allama-stream / stream-floor" in run.stdout and "| 4 | uvloop / asyncio |" in run.stdout
    assert "allama-stream / allama-serial" in run.stdout and "- 4 streams:" in run.stdout
    assert "| streams | decode-only tok/s, end to end |" in run.stdout and "allama-stream / decode-only" in run.stdout
    assert "decode µs a call / decode-only's, medians: decode-zeroed, decode-pause, decode-loop" in run.stdout
    rounds = json.loads((tmp_path / "rounds.json").read_text())
    ways = ("decode-only", "decode-zeroed", "decode-pause", "decode-loop", "stream-floor", "allama-stream",
            "allama-whole", "allama-serial", "stream-floor (uvloop)", "allama-stream (uvloop)", "allama-whole (uvloop)",
            "allama-serial (uvloop)")
    assert {len(rounds[level][way]) for level in ("1", "4") for way in ways} == {2}
    assert all(r["loop_cpu_us_per_token"] > 0 for level in ("1", "4") for r in rounds[level]["stream-floor"])
    # decode-only reports its generation rate too, the figure paired with S_TG
    assert all(r["gen_rate"] > 0 for level in ("1", "4") for r in rounds[level]["decode-only"])


def test_engine_share_loops_decode_over_stale_cells_unless_zeroed(monkeypatch):
    """The bare loops decode over what earlier rounds left in the KV cache, as the engine does
    (a zeroed cache decodes the overhead preset up to 10% faster); only decode-zeroed zeroes it."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    import engine_share
    from preset_models import preset_model

    args = argparse.Namespace(kv="split", slot_ctx=24, threads=1, max_tokens=4, temperature=0.8)
    loop = engine_share.DecodeLoop(preset_model("overhead"), 2, args)
    clears: list[bool] = []

    class RecordingContext:
        def __init__(self, ctx):
            self._ctx = ctx

        def memory_clear(self, data=True):
            clears.append(data)
            self._ctx.memory_clear(data)

        def __getattr__(self, name):
            return getattr(self._ctx, name)

    native_ctx, loop.ctx = loop.ctx, RecordingContext(loop.ctx)
    try:
        prompts = [[1, 200, 300, 400], [1, 500, 600, 700]]
        loop.run(prompts, sample=False)  # decode-only (decode-loop and stream-floor clear the same way)
        loop.run(prompts, sample=False, zero_kv=True)  # decode-zeroed
        loop.run(prompts, sample=False)
    finally:
        loop.ctx = native_ctx
        loop.close()
    assert clears == [False, True, False]


def test_engine_share_pairs_llama_batched_bench_or_says_it_is_not_built(tmp_path):
    run = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "engine_share.py"), "--smoke",
                          "--ways", "decode-only,batched-bench", "--json", str(tmp_path / "rounds.json")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if not (REPO_ROOT / "build" / "peers" / "bin" / "llama-batched-bench").exists():
        assert run.returncode == 2 and "llama-batched-bench is not built" in run.stderr, run.stderr[-3000:]
        return
    assert run.returncode == 0, run.stderr[-3000:]
    rounds = json.loads((tmp_path / "rounds.json").read_text())
    assert all(r["gen_rate"] > 0 and r["rate"] > 0 for level in ("1", "4") for r in rounds[level]["batched-bench"])
    assert "| 4 | " in run.stdout.split("Against decode-only")[1]


def test_http_serving_gives_allama_the_kv_cells_llama_server_gets(monkeypatch):
    """allama's server gets a window of KV cells per slot, as llama-server's --ctx-size gives
    each of its slots: with the default kv_size (one window) its slots would take turns."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    import http_serving
    from preset_models import preset_model

    args = argparse.Namespace(threads=2, slot_ctx=256, n_parallel=8, flash_attn=False, llama_server_args="")
    specs = http_serving.server_specs(str(preset_model("tiny")), args)
    allama, server = specs["allama"].argv(8000), specs["llama-server"].argv(8001)
    assert int(allama[allama.index("--n_ctx") + 1]) == 256
    assert int(allama[allama.index("--kv_size") + 1]) == int(server[server.index("-c") + 1]) == 256 * 8


def test_rpc_split_benchmark_smoke(tmp_path):
    run = smoke_run("rpc_split.py", tmp_path)
    assert "| local | 1 |" in run.stdout and "| 2 workers | 2 |" in run.stdout


def test_replicas_benchmark_smoke(tmp_path):
    haproxy_binary()
    run = smoke_run("replicas.py", tmp_path)
    assert "| 1 | 2 |" in run.stdout and "| 2 | 1 |" in run.stdout  # replicas, threads each
    assert "2 replicas / 1 replica" in run.stdout


def test_step_parts_benchmark_smoke(tmp_path):
    run = smoke_run("step_parts.py", tmp_path)
    rows = [line for line in run.stdout.splitlines() if line.startswith("| 1, ") or line.startswith("| 2, ")]
    assert [row.split("|")[1].strip() for row in rows] == ["1, stream", "1, whole", "2, stream", "2, whole"]
    # every part was timed: no column of a streamed row stayed at zero
    assert all(float(cell.replace(",", "")) > 0 for cell in rows[0].split("|")[2:-1])


def test_sampling_benchmark_smoke(tmp_path):
    run = smoke_run("sampling.py", tmp_path)
    assert "| default |" in run.stdout and "| greedy |" in run.stdout and "2 rows" in run.stdout


def test_sync_streams_benchmark_smoke(tmp_path):
    run = smoke_run("sync_streams.py", tmp_path, "--against", "HEAD", "--json", str(tmp_path / "rounds.json"))
    assert "| 1 |" in run.stdout and "| 4 |" in run.stdout and "now / HEAD, paired" in run.stdout
    rounds = json.loads((tmp_path / "rounds.json").read_text())
    assert {len(rounds[level][way]) for level in ("1", "4") for way in ("now", "HEAD")} == {2}
    assert all(r["loop_cpu_us_per_token"] > 0 for level in ("1", "4") for r in rounds[level]["now"])
