"""The engine's share of a step, paired in one process: allama against the bare decode loop.

overhead.py compares systems run in separate processes, seconds to minutes apart; on a VM whose
speed drifts by 2x within a minute, its per-run ratios swing as much as the machine does. Here
the three ways of generating the same tokens alternate round by round inside one process, on
the same model, context parameters and prompts, so that each ratio pairs rounds a fraction of a
second apart:

  decode-loop     a bare Python loop: one decode of every stream per step and allama's native
                  sampling of every row (no engine, no event loop, no text)
  allama-stream   Llama.create_completion(stream=True), each stream read with `async for`
  allama-whole    the same requests awaited whole (no per-token work on the event loop)

Every rate is end to end (prompts prefilled in batches of up to 512 tokens, then --max-tokens
tokens per stream). Besides the rates it reports each way's decode time per decode call (longer
where other work shares the cores the decode uses) and the event loop's CPU time per token.

    python benchmarks/engine_share.py --kv split
    python benchmarks/engine_share.py --smoke          # seconds: CI smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from concurrency import prompts_for  # noqa: E402 - beside this script
from preset_models import preset_model  # noqa: E402

WAYS = ("decode-loop", "allama-stream", "allama-whole")


class DecodeLoop:
    """The floor under any engine that samples: decode and native sampling from a bare loop."""

    def __init__(self, model_path: Path, n: int, args: argparse.Namespace) -> None:
        from allama import _native

        self._native = _native
        self.n = n
        self.model = _native.Model.load(str(model_path), _native.ModelParams())
        params = _native.ContextParams()
        params.n_seq_max = n
        params.kv_unified = args.kv == "unified"
        params.n_ctx = args.slot_ctx * n
        params.n_threads = params.n_threads_batch = args.threads
        params.n_batch = params.n_ubatch = 512
        params.flash_attn_type = 0
        self.ctx = _native.Context(self.model, params)
        self.batch = _native.Batch(max(512, n), 1)
        self.max_tokens = args.max_tokens
        self.temperature = args.temperature

    def run(self, prompts: list[list[int]]) -> dict[str, float]:
        native, ctx, batch = self._native, self.ctx, self.batch
        jobs = []
        for row in range(self.n):
            params = native.SamplerParams()
            params.temperature, params.seed = self.temperature, row
            jobs.append((native.SamplerChain(self.model, params), row))
        ctx.memory_clear()
        t0 = time.perf_counter()
        decode = 0.0
        calls = 0
        seq = 0
        while seq < self.n:  # whole prompts in batches of up to 512 tokens, as the engine fills them
            batch.clear()
            while seq < self.n and batch.n_tokens + len(prompts[seq]) - 1 <= 512:
                batch.add_tokens(prompts[seq][:-1], 0, seq, False)
                seq += 1
            t = time.perf_counter()
            ctx.decode(batch)
            decode += time.perf_counter() - t
            calls += 1
        tokens = [prompt[-1] for prompt in prompts]
        pos = len(prompts[0]) - 1
        for step in range(self.max_tokens):
            batch.clear()
            for seq in range(self.n):
                batch.add(tokens[seq], pos + step, seq, True)
            t = time.perf_counter()
            ctx.decode(batch)
            decode += time.perf_counter() - t
            calls += 1
            tokens = native.sample_batch(ctx, jobs)
        seconds = time.perf_counter() - t0
        return {"rate": self.n * self.max_tokens / seconds, "decode_us": decode / calls * 1e6,
                "loop_cpu_us_per_token": 0.0}

    def close(self) -> None:
        self.ctx.close()
        self.model.close()


class Engine:
    """allama in-process, its streams read token by token or awaited whole."""

    def __init__(self, model_path: Path, n: int, args: argparse.Namespace) -> None:
        from allama import Llama

        kv = {"kv_size": args.slot_ctx * n} if args.kv == "unified" else {"kv_unified": False}
        self.llm = Llama(str(model_path), n_ctx=args.slot_ctx, n_parallel=n, n_threads=args.threads,
                         n_threads_batch=args.threads, flash_attn=False, n_keep=0, verbose=False, **kv)
        self.args = args

    async def _one(self, prompt: list[int], seed: int, whole: bool) -> None:
        options = dict(max_tokens=self.args.max_tokens, temperature=self.args.temperature, ignore_eos=True, seed=seed)
        if whole:
            await self.llm.create_completion(prompt, **options)
            return
        stream = await self.llm.create_completion(prompt, stream=True, **options)
        async for _chunk in stream:
            pass

    async def run(self, prompts: list[list[int]], whole: bool) -> dict[str, float]:
        before = self.llm.stats()
        cpu0 = time.thread_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(self._one(p, seed, whole) for seed, p in enumerate(prompts)))
        seconds = time.perf_counter() - t0
        loop_cpu = time.thread_time() - cpu0
        after = self.llm.stats()
        tokens = after.tokens_generated - before.tokens_generated
        steps = after.decode_calls - before.decode_calls
        if tokens != len(prompts) * self.args.max_tokens:
            raise RuntimeError(f"generated {tokens} tokens, not {len(prompts) * self.args.max_tokens}")
        return {"rate": tokens / seconds,
                "decode_us": (after.decode_seconds - before.decode_seconds) / steps * 1e6,
                "loop_cpu_us_per_token": loop_cpu / tokens * 1e6}

    def close(self) -> None:
        self.llm.close()


def measure_level(model_path: Path, n: int, args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """`args.rounds` rounds of the three ways in turn (the order rotating), on the same prompts per round."""
    loop, engine = DecodeLoop(model_path, n, args), Engine(model_path, n, args)
    rounds: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}

    async def main() -> None:
        warm = prompts_for(n, args.prompt_tokens, args.n_vocab, 999, 1)
        loop.run(warm)  # a round of each first, not counted: the first request of a process
        await engine.run(warm, whole=False)
        for r in range(args.rounds):
            prompts = prompts_for(n, args.prompt_tokens, args.n_vocab, 1000 * n + r, 1)
            for way in WAYS[r % 3:] + WAYS[:r % 3]:
                if way == "decode-loop":
                    rounds[way].append(loop.run(prompts))
                else:
                    rounds[way].append(await engine.run(prompts, whole=way == "allama-whole"))

    try:
        asyncio.run(main())
    finally:
        engine.close()
        loop.close()
    return rounds


def spread(values: list[float], digits: int = 2, unit: str = "") -> str:
    """median [min-max]"""
    return f"{statistics.median(values):,.{digits}f}{unit} [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"


def table(results: dict[int, dict[str, list[dict[str, float]]]]) -> str:
    lines = ["| streams | decode-loop tok/s | allama-stream / decode-loop | allama-whole / decode-loop "
             "| decode µs a call: loop, whole, stream | event loop CPU µs a token: whole, stream |",
             "|---:|---:|---:|---:|---:|---:|"]
    for n, rounds in results.items():
        base = [r["rate"] for r in rounds["decode-loop"]]

        def ratio(way: str) -> str:
            return spread([r["rate"] / b for r, b in zip(rounds[way], base)], unit="x")

        def decode(way: str) -> str:
            return f"{statistics.median(r['decode_us'] for r in rounds[way]):,.0f}"

        def cpu(way: str) -> str:
            return f"{statistics.median(r['loop_cpu_us_per_token'] for r in rounds[way]):.1f}"

        lines.append(f"| {n} | {spread(base, 0)} | {ratio('allama-stream')} | {ratio('allama-whole')} "
                     f"| {decode('decode-loop')}, {decode('allama-whole')}, {decode('allama-stream')} "
                     f"| {cpu('allama-whole')}, {cpu('allama-stream')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a GGUF model; default: the tiny overhead model (built if missing)")
    parser.add_argument("--levels", default="1,8,32,64")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of each way per level")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kv", choices=["unified", "split"], default="split")
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 2 rounds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.levels, args.rounds, args.prompt_tokens, args.max_tokens = "1,4", 2, 8, 8
    args.model = args.model or preset_model("overhead")
    args.slot_ctx = args.prompt_tokens + args.max_tokens + 8
    from allama import _native

    params = _native.ModelParams()
    params.vocab_only = True
    vocab_model = _native.Model.load(str(args.model), params)
    args.n_vocab = _native.Vocab(vocab_model).n_tokens
    vocab_model.close()
    print(f"model {args.model}; {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{args.threads} threads; prompt {args.prompt_tokens}, generate {args.max_tokens}, "
          f"temperature {args.temperature}; KV {args.kv}; {args.rounds} rounds", file=sys.stderr)
    results = {}
    for n in (int(x) for x in args.levels.split(",")):
        results[n] = measure_level(args.model, n, args)
        print(f"{n} streams done", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({str(n): r for n, r in results.items()}, indent=1))
    print("Rates end to end, ratios per round (median [min-max]); each level's ways alternate in one process.\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
