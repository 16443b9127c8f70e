"""Throughput and latency of concurrent streams: allama vs llama-cpp-python vs llama.cpp.

For each concurrency level it runs that many streaming completions at once (distinct
random prompts of --prompt-tokens tokens, --max-tokens generated each, EOS ignored) and
measures aggregate generated tokens/s, time to first token (TTFT) and inter-token
latency (ITL), for:

  allama            in-process, one Llama with n_parallel = the largest level
  llama-cpp-python  0.3.36 in-process, driven from threads behind a lock (as its users
                    must: it serves one request at a time), on the same llama.cpp build
                    when benchmarks/build_peers.sh made one
  batched-bench     llama.cpp's llama-batched-bench at the same batch sizes: the ceiling

Prints a markdown table and writes a plot. Usage:

    python benchmarks/concurrency.py                     # the ~125M F16 benchmark model
    python benchmarks/concurrency.py --smoke             # seconds: tiny model, CI smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from preset_models import preset_model  # beside this script
from throughput_plot import Series, plot_throughput

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS_BIN = ROOT / "build" / "peers" / "bin"


@dataclass
class Run:
    """Timings of one concurrency level for one system."""

    system: str
    concurrency: int
    generated: int = 0
    wall: float = 0.0
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    loop_cpu: float = 0.0  # CPU time of the event loop thread (allama only)

    @property
    def tokens_per_s(self) -> float:
        return self.generated / self.wall if self.wall else 0.0

    def steady_tokens_per_s(self, streams_at_once: int) -> float:
        """The generation-phase rate: streams decoding together / median inter-token latency."""
        return streams_at_once / pct(self.itl, 50) if self.itl else float("nan")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def prompts_for(n: int, length: int, n_vocab: int, seed: int, bos: int) -> list[list[int]]:
    """`n` prompts: the model's BOS, then random tokens (the same for every system)."""
    rng = np.random.default_rng(seed)
    return [[bos] + rng.integers(100, n_vocab - 100, size=length - 1).tolist() for _ in range(n)]


# --------------------------------------------------------------------------- allama

async def allama_level(llm, prompts: list[list[int]], max_tokens: int) -> Run:
    run = Run("allama", len(prompts))
    stamps: list[list[float]] = [[] for _ in prompts]

    async def one(i: int) -> None:
        start = time.perf_counter()
        stream = await llm.create_completion(prompts[i], max_tokens=max_tokens, temperature=0.0,
                                             ignore_eos=True, stream=True)
        async for chunk in stream:
            stamps[i].append(time.perf_counter())
        stamps[i].insert(0, start)

    t0 = time.perf_counter()
    cpu0 = time.thread_time()
    await asyncio.gather(*(one(i) for i in range(len(prompts))))
    run.loop_cpu = time.thread_time() - cpu0
    run.wall = time.perf_counter() - t0
    run.generated = len(prompts) * max_tokens
    for s in stamps:
        run.ttft.append(s[1] - s[0])
        run.itl.extend(b - a for a, b in zip(s[1:], s[2:]))
    return run


def bench_allama(model: str, levels: list[int], args: argparse.Namespace) -> tuple[list[Run], dict]:
    from allama import Llama

    window = args.prompt_tokens + args.max_tokens + 8
    # a window of KV cells for every stream, as llama-batched-bench gets: with the default
    # kv_size (one window shared by all) the streams would take turns instead
    llm = Llama(model, n_ctx=window, n_parallel=max(levels), kv_size=window * max(levels),
                n_batch=512, n_threads=args.threads, n_threads_batch=args.threads, n_keep=0,
                flash_attn=args.flash_attn)
    runs = []
    try:
        asyncio.run(allama_level(llm, prompts_for(1, args.prompt_tokens, llm.n_vocab(), 99, llm.token_bos()), 4))  # warm up
        before = llm.stats()
        for level in levels:
            prompts = prompts_for(level, args.prompt_tokens, llm.n_vocab(), level, llm.token_bos())
            steps = llm.stats().decode_calls
            runs.append(asyncio.run(allama_level(llm, prompts, args.max_tokens)))
            steps = llm.stats().decode_calls - steps
            # together, the streams take a step per generated token and at most one per prompt
            if steps > args.max_tokens + level:
                raise RuntimeError(f"{level} streams took {steps} decode steps: they did not decode together")
        after = llm.stats()
    finally:
        llm.close()
    overhead = {
        "tokens": after.tokens_generated - before.tokens_generated,
        "step_s": after.step_seconds - before.step_seconds,
        "decode_s": after.decode_seconds - before.decode_seconds,
        "sample_s": after.sample_seconds - before.sample_seconds,
        "loop_cpu_s": sum(r.loop_cpu for r in runs),
    }
    return runs, overhead


# --------------------------------------------------------------------------- llama-cpp-python

def bench_llama_cpp_python(model: str, levels: list[int], args: argparse.Namespace) -> list[Run]:
    if PEERS_BIN.joinpath("libllama.so").exists():
        os.environ.setdefault("LLAMA_CPP_LIB_PATH", str(PEERS_BIN))
    try:
        from llama_cpp import Llama as PeerLlama
    except Exception as exc:  # noqa: BLE001
        print(f"llama-cpp-python unavailable ({exc}); run benchmarks/build_peers.sh", file=sys.stderr)
        return []
    llm = PeerLlama(model, n_ctx=args.prompt_tokens + args.max_tokens + 8, n_threads=args.threads,
                    n_threads_batch=args.threads, n_batch=512, verbose=False, flash_attn=args.flash_attn)
    lock = threading.Lock()
    runs = []

    def one(prompt: list[int], stamps: list[float]) -> None:
        stamps.append(time.perf_counter())
        with lock:  # llama-cpp-python serves one request at a time
            # (no logit_bias against EOS: llama-cpp-python applies it in Python, which would slow it;
            # greedy decoding of the random-weight model does not pick EOS, and tokens are counted)
            for _ in llm.create_completion(prompt, max_tokens=args.max_tokens, temperature=0.0, stream=True):
                stamps.append(time.perf_counter())

    def level_run(level: int, prompts: list[list[int]], max_tokens: int) -> Run:
        run = Run("llama-cpp-python", level)
        stamps = [[] for _ in prompts]
        threads = [threading.Thread(target=one, args=(p, s)) for p, s in zip(prompts, stamps)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        run.wall = time.perf_counter() - t0
        run.generated = sum(len(s) - 1 for s in stamps)
        for s in stamps:
            run.ttft.append(s[1] - s[0])
            run.itl.extend(b - a for a, b in zip(s[1:], s[2:]))
        return run

    bos = llm.token_bos()
    level_run(1, prompts_for(1, args.prompt_tokens, llm.n_vocab(), 99, bos), 4)  # warm up
    for level in levels:
        runs.append(level_run(level, prompts_for(level, args.prompt_tokens, llm.n_vocab(), level, bos), args.max_tokens))
    llm.close()
    return runs


# --------------------------------------------------------------------------- llama.cpp ceiling

def bench_batched(model: str, levels: list[int], args: argparse.Namespace) -> dict[str, dict[int, float]]:
    """llama-batched-bench at the same sizes, with a unified KV cache (as allama uses) and
    without (llama.cpp's default). Returns, per mode, generated tokens/s over the
    generation phase only (S_TG) and over prefill + generation (what allama's aggregate
    measures: every stream's prompt is evaluated, then its tokens generated)."""
    exe = PEERS_BIN / "llama-batched-bench"
    if not exe.exists():
        print("llama-batched-bench not built; run benchmarks/build_peers.sh", file=sys.stderr)
        return {}
    ctx = max(levels) * (args.prompt_tokens + args.max_tokens) + 64
    results: dict[str, dict[int, float]] = {}
    for mode, extra in (("unified", ["-kvu"]), ("split", [])):
        cmd = [str(exe), "-m", model, "-c", str(ctx), "-b", "512", "-ub", "512", "-npp", str(args.prompt_tokens),
               "-ntg", str(args.max_tokens), "-npl", ",".join(map(str, levels)), "-t", str(args.threads),
               "-tb", str(args.threads), "-fa", "on" if args.flash_attn else "off", "--output-format", "jsonl", *extra]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        s_tg, e2e = {}, {}
        for line in (out.stdout + out.stderr).splitlines():
            line = line.strip()
            if line.startswith("{") and '"speed_tg"' in line:
                row = json.loads(line)
                s_tg[int(row["pl"])] = float(row["speed_tg"])
                e2e[int(row["pl"])] = int(row["pl"]) * int(row["tg"]) / float(row["t"])
        results[f"{mode} S_TG"] = s_tg
        results[f"{mode} end-to-end"] = e2e
    return results


# --------------------------------------------------------------------------- report

def table(allama: list[Run], peer: list[Run], ceiling: dict[str, dict[int, float]]) -> str:
    peer_by = {r.concurrency: r for r in peer}
    nan = float("nan")
    e2e = ceiling.get("unified end-to-end", {})
    lines = [
        "| streams | allama tok/s | llama-cpp-python tok/s | ratio | batched-bench end-to-end, unified KV (ratio) "
        "| generation phase: allama / llama-cpp-python tok/s (ratio) | batched-bench S_TG unified / split KV (allama ratio) "
        "| allama TTFT p50/p95 ms | allama ITL p50/p95 ms | llama-cpp-python TTFT p50/p95 ms | llama-cpp-python ITL p50/p95 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in allama:
        p = peer_by.get(r.concurrency)
        c = e2e.get(r.concurrency, nan)
        su = ceiling.get("unified S_TG", {}).get(r.concurrency, nan)
        ss = ceiling.get("split S_TG", {}).get(r.concurrency, nan)
        lines.append(
            f"| {r.concurrency} | {r.tokens_per_s:.1f} | {p.tokens_per_s if p else nan:.1f} "
            f"| {r.tokens_per_s / p.tokens_per_s if p else nan:.2f}x "
            f"| {c:.1f} ({r.tokens_per_s / c:.2f}x) "
            f"| {r.steady_tokens_per_s(r.concurrency):.1f} / {p.steady_tokens_per_s(1) if p else nan:.1f} "
            f"({r.steady_tokens_per_s(r.concurrency) / p.steady_tokens_per_s(1) if p else nan:.2f}x) "
            f"| {su:.1f} / {ss:.1f} ({r.steady_tokens_per_s(r.concurrency) / su:.2f}x) "
            f"| {pct(r.ttft, 50) * 1e3:.0f} / {pct(r.ttft, 95) * 1e3:.0f} "
            f"| {pct(r.itl, 50) * 1e3:.1f} / {pct(r.itl, 95) * 1e3:.1f} "
            f"| {pct(p.ttft, 50) * 1e3 if p else nan:.0f} / {pct(p.ttft, 95) * 1e3 if p else nan:.0f} "
            f"| {pct(p.itl, 50) * 1e3 if p else nan:.1f} / {pct(p.itl, 95) * 1e3 if p else nan:.1f} |")
    return "\n".join(lines)


def plot(allama: list[Run], peer: list[Run], ceiling: dict[str, dict[int, float]], path: Path) -> None:
    series: Series = {"allama": ([r.concurrency for r in allama], [r.tokens_per_s for r in allama], "o-")}
    if peer:
        series["llama-cpp-python 0.3.36"] = ([r.concurrency for r in peer], [r.tokens_per_s for r in peer], "s-")
    for key, style in (("unified end-to-end", "k--"), ("split S_TG", "k:")):
        if ceiling.get(key):
            levels = sorted(ceiling[key])
            series[f"llama-batched-bench, {key}"] = (levels, [ceiling[key][k] for k in levels], style)
    plot_throughput(series, path, "concurrent streams", "generated tokens/s (aggregate)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a GGUF model; default: the ~125M F16 benchmark model (built if missing)")
    parser.add_argument("--levels", default="1,2,4,8,16")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--flash-attn", action="store_true", help="flash attention on, for all systems")
    parser.add_argument("--systems", default="allama,llama-cpp-python,batched-bench")
    parser.add_argument("--plot", type=Path, help="write the plot here (PNG)")
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes: checks the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        # two streams need more cells than one window's cache (llama.cpp pads it to 256 cells):
        # a benchmark that shared one window among its streams would park them and fail
        args.levels, args.prompt_tokens, args.max_tokens = "1,2", 8, 160
        args.systems = "allama"
        args.plot = None
    levels = [int(x) for x in args.levels.split(",")]
    model = args.model or str(default_model(args.smoke))
    systems = args.systems.split(",")
    print(f"model {model}; {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{args.threads} threads; prompt {args.prompt_tokens}, generate {args.max_tokens}; "
          f"flash attention {'on' if args.flash_attn else 'off'}", file=sys.stderr)

    allama_runs, overhead = bench_allama(model, levels, args) if "allama" in systems else ([], {})
    peer_runs = bench_llama_cpp_python(model, levels, args) if "llama-cpp-python" in systems else []
    ceiling = bench_batched(model, levels, args) if "batched-bench" in systems else {}
    print(table(allama_runs, peer_runs, ceiling))
    if overhead.get("tokens"):
        python_s = overhead["step_s"] - overhead["decode_s"] - overhead["sample_s"]
        print(f"\nallama decode thread, per generated token: step {overhead['step_s'] / overhead['tokens'] * 1e6:.0f} us "
              f"= decode {overhead['decode_s'] / overhead['tokens'] * 1e6:.0f} us + sampling "
              f"{overhead['sample_s'] / overhead['tokens'] * 1e6:.0f} us + Python "
              f"{python_s / overhead['tokens'] * 1e6:.1f} us; event loop thread: "
              f"{overhead['loop_cpu_s'] / overhead['tokens'] * 1e6:.1f} us CPU")
    if args.plot:
        plot(allama_runs, peer_runs, ceiling, args.plot)
    return 0


def default_model(smoke: bool) -> Path:
    return preset_model("tiny" if smoke else "bench")


if __name__ == "__main__":
    raise SystemExit(main())
