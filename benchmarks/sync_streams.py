"""The blocking twin's streams: tokens/s and the loop thread's CPU per token.

allama.sync.Llama runs every request on a private event loop thread; a stream's chunks cross
from that thread to the caller's. Here one thread per stream reads
`create_completion(stream=True)` on one model, and the script reports the rate end to end
and the loop thread's CPU time per streamed token (from /proc, Linux only).

With --against REV, allama/loop_thread.py as it was at git revision REV is swapped in for
every other round on the same model (the two alternate, so each ratio pairs rounds a
fraction of a second apart): what a change to how chunks cross threads is worth.

    python benchmarks/sync_streams.py --levels 1,8 --rounds 10 --against 2daa360
    python benchmarks/sync_streams.py --smoke          # seconds: CI smoke test
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))
from concurrency import prompts_for  # noqa: E402 - beside this script
from preset_models import ROOT, preset_model  # noqa: E402


def loop_thread_at(revision: str) -> ModuleType:
    """allama/loop_thread.py at a git revision, imported as a module of its own."""
    source = subprocess.run(["git", "show", f"{revision}:allama/loop_thread.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as file:
        file.write(source)
    spec = importlib.util.spec_from_file_location(f"loop_thread_{revision}", file.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.unlink(file.name)
    return module


def thread_cpu_us(native_id: int) -> float:
    """CPU time a thread of this process has run, in µs."""
    with open(f"/proc/self/task/{native_id}/schedstat") as file:
        return int(file.read().split()[0]) / 1e3


def one_round(llm, prompts: list[list[int]], args: argparse.Namespace) -> dict[str, float]:
    """Every prompt streamed at once, a thread each; the rate and the loop thread's CPU."""
    counts: list[int] = []

    def read(i: int) -> None:
        chunks = llm.create_completion(prompts[i], max_tokens=args.max_tokens, temperature=args.temperature,
                                       ignore_eos=True, stream=True, seed=i)
        counts.append(sum(1 for _ in chunks))

    loop_id = llm._portal._thread.native_id
    cpu0, t0 = thread_cpu_us(loop_id), time.perf_counter()
    readers = [threading.Thread(target=read, args=(i,)) for i in range(len(prompts))]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    t1, cpu1 = time.perf_counter(), thread_cpu_us(loop_id)
    tokens = sum(counts)
    return {"tokens_per_s": tokens / (t1 - t0), "loop_cpu_us_per_token": (cpu1 - cpu0) / tokens}


def measure_level(n: int, ways: dict[str, type], args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    from allama.sync import Llama

    llm = Llama(str(args.model), n_ctx=args.slot_ctx, n_parallel=n, kv_size=args.slot_ctx * n,
                n_threads=args.threads, n_threads_batch=args.threads, flash_attn=False, n_keep=0, verbose=False)
    prompts = prompts_for(n, args.prompt_tokens, llm.n_vocab(), n, 1)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in ways}
    try:
        for r in range(args.rounds + 1):  # round 0 warms up and is not kept
            order = list(ways.items()) if r % 2 else list(ways.items())[::-1]
            for name, cls in order:
                llm._portal.__class__ = cls  # same loop and thread; only how chunks cross differs
                figures = one_round(llm, prompts, args)
                if r:
                    rounds[name].append(figures)
    finally:
        llm.close()
    return rounds


def spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f}x [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def table(results: dict[int, dict[str, list[dict[str, float]]]], names: list[str]) -> str:
    header = "| streams | " + " | ".join(f"{name} tokens/s (median) | {name} loop CPU µs/token" for name in names)
    lines = [header + (f" | {names[0]} / {names[1]}, paired |" if len(names) == 2 else " |"),
             "|---:|" + "---:|---:|" * len(names) + ("---:|" if len(names) == 2 else "")]
    for n, rounds in results.items():
        cells = [f"{statistics.median(r['tokens_per_s'] for r in rounds[name]):,.0f} | "
                 f"{statistics.median(r['loop_cpu_us_per_token'] for r in rounds[name]):.1f}" for name in names]
        row = f"| {n} | " + " | ".join(cells) + " |"
        if len(names) == 2:
            new, old = (rounds[name] for name in names)
            row += f" {spread([a['tokens_per_s'] / b['tokens_per_s'] for a, b in zip(new, old)])} |"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a GGUF model; default: the tiny overhead model (built if missing)")
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--rounds", type=int, default=10, help="rounds per level (of each way with --against)")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--against", metavar="REV", help="also run allama/loop_thread.py as of this git revision")
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 2 rounds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.levels, args.rounds, args.prompt_tokens, args.max_tokens = "1,4", 2, 8, 8
    args.model = args.model or preset_model("overhead")
    args.slot_ctx = args.prompt_tokens + args.max_tokens + 8
    from allama.loop_thread import LoopThread

    ways: dict[str, type] = {"now": LoopThread}
    if args.against:
        ways[args.against] = loop_thread_at(args.against).LoopThread
    print(f"model {args.model}; {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{args.threads} threads; prompt {args.prompt_tokens}, generate {args.max_tokens}, "
          f"temperature {args.temperature}; {args.rounds} rounds", file=sys.stderr)
    results = {}
    for n in (int(x) for x in args.levels.split(",")):
        results[n] = measure_level(n, ways, args)
        print(f"{n} streams done", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({str(n): r for n, r in results.items()}, indent=1))
    print(table(results, list(ways)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
