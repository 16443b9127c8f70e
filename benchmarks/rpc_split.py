"""A model split over RPC workers against the same model on this machine alone.

Runs the model three ways on the same cores and measures prompt processing and generation
tokens/s at each number of concurrent streams:

  local        one process, --threads threads
  1 worker     every layer on one `allama rpc-server` (--threads threads) on 127.0.0.1
  2 workers    the layers split over two workers (--threads / 2 threads each) on 127.0.0.1

On loopback the network is free and the split can only cost: each decode step sends the
graph and the activations to each worker in turn and waits for its reply, while the
workers take turns (a layer runs on one host at a time). Usage:

    python benchmarks/rpc_split.py                  # the ~125M F16 benchmark model
    python benchmarks/rpc_split.py --smoke          # seconds: tiny model, CI smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from preset_models import preset_model  # beside this script

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "SKBUILD_EDITABLE_SKIP": "1"}


@dataclass
class Result:
    setup: str
    streams: int
    prompt_tokens_per_s: float
    generated_tokens_per_s: float


@contextmanager
def rpc_worker(threads: int) -> Iterator[str]:
    """An `allama rpc-server` on a free loopback port; yields its endpoint once it accepts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "allama", "rpc-server", "--port", str(port), "--threads",
                             str(threads)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the RPC worker did not start") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def measure(llm, streams: int, prompt_tokens: int, max_tokens: int, seed: int) -> tuple[float, float]:
    """(prompt tokens/s, generated tokens/s) with `streams` concurrent greedy completions of
    distinct random prompts: the prompt rate from completions of one token, the generation
    rate from when every stream has its first token to the end of all."""
    rng = np.random.default_rng(seed)

    def prompts() -> list[list[int]]:
        return [[llm.token_bos()] + rng.integers(100, llm.n_vocab() - 100, size=prompt_tokens - 1).tolist()
                for _ in range(streams)]

    start = time.perf_counter()
    await asyncio.gather(*(llm.create_completion(p, max_tokens=1, temperature=0.0) for p in prompts()))
    prompt_rate = streams * prompt_tokens / (time.perf_counter() - start)

    first: list[float] = []

    async def one(prompt: list[int]) -> None:
        arrived = None
        stream = await llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, ignore_eos=True,
                                             stream=True)
        async for _ in stream:
            if arrived is None:
                arrived = time.perf_counter()
        first.append(arrived)

    await asyncio.gather(*(one(p) for p in prompts()))
    end = time.perf_counter()
    generating = max(first)
    return prompt_rate, streams * (max_tokens - 1) / (end - generating)


def run_setup(model: str, setup: str, args: argparse.Namespace, levels: list[int]) -> list[Result]:
    from allama import Llama

    with ExitStack() as stack:
        if setup == "local":
            options = {"n_threads": args.threads, "n_threads_batch": args.threads}
        else:
            workers = int(setup.split()[0])
            endpoints = [stack.enter_context(rpc_worker(max(1, args.threads // workers))) for _ in range(workers)]
            options = {"rpc_servers": endpoints, "n_gpu_layers": -1, "n_threads": 1, "n_threads_batch": 1}
        window = args.prompt_tokens + args.max_tokens + 8
        # a window of KV cells for every stream: with the default kv_size (one window shared
        # by all) the streams would take turns instead of decoding together
        llm = Llama(model, n_ctx=window, n_parallel=max(levels), kv_size=window * max(levels),
                    n_batch=max(512, args.prompt_tokens), **options)
        try:
            asyncio.run(measure(llm, 1, 8, 4, seed=0))  # warm-up
            out = []
            for streams in levels:
                steps = llm.stats().decode_calls
                prompt_rate, gen_rate = asyncio.run(measure(llm, streams, args.prompt_tokens, args.max_tokens,
                                                            seed=streams))
                steps = llm.stats().decode_calls - steps
                # together: a step per generated token, and at most one per prompt in each phase
                if steps > args.max_tokens + 2 * streams:
                    raise RuntimeError(f"{setup}, {streams} streams took {steps} decode steps: "
                                       "they did not decode together")
                out.append(Result(setup, streams, prompt_rate, gen_rate))
                print(f"{setup}, {streams} streams: prompt {prompt_rate:,.0f} tok/s, "
                      f"generation {gen_rate:,.1f} tok/s", file=sys.stderr, flush=True)
            return out
        finally:
            llm.close()


def table(results: list[Result]) -> str:
    local = {r.streams: r for r in results if r.setup == "local"}
    lines = ["| setup | streams | prompt tok/s (ratio to local) | generation tok/s (ratio to local) |",
             "|---|---:|---:|---:|"]
    for r in results:
        base = local.get(r.streams)
        pr = f" ({r.prompt_tokens_per_s / base.prompt_tokens_per_s:.2f}x)" if base else ""
        gr = f" ({r.generated_tokens_per_s / base.generated_tokens_per_s:.2f}x)" if base else ""
        lines.append(f"| {r.setup} | {r.streams} | {r.prompt_tokens_per_s:,.0f}{pr} | "
                     f"{r.generated_tokens_per_s:,.1f}{gr} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a GGUF model; default: the ~125M F16 benchmark model (built if missing)")
    parser.add_argument("--levels", default="1,8", help="concurrent streams, comma-separated")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all (split among the workers)")
    parser.add_argument("--setups", default="local,1 worker,2 workers")
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes: checks the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        # two streams need more cells than one window's cache (llama.cpp pads it to 256 cells):
        # a benchmark that shared one window among its streams would park them and fail
        args.levels, args.prompt_tokens, args.max_tokens = "1,2", 16, 160
    levels = [int(x) for x in args.levels.split(",")]
    model = args.model or str(preset_model("tiny" if args.smoke else "bench"))
    results = [r for setup in args.setups.split(",") for r in run_setup(model, setup.strip(), args, levels)]
    print(f"model {Path(model).name}; {args.prompt_tokens}-token prompts, {args.max_tokens} tokens generated each, "
          f"greedy; {args.threads} threads in all; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
