"""The engine's share of a step, paired in one process: allama against the bare decode loop.

overhead.py compares systems run in separate processes, seconds to minutes apart; on a VM whose
speed drifts by 2x within a minute, its per-run ratios swing as much as the machine does. Here
the ways of generating the same tokens alternate round by round inside one process, on
the same model, context parameters and prompts, so that each ratio pairs rounds a fraction of a
second apart:

  decode-only     the loop whose generation llama-batched-bench times as S_TG: one decode of
                  every stream per step, every row's logits out, no sampling (each stream
                  decodes the same token again); the ceiling, with which the others are paired
                  in the limit table. Like every way here, and like llama-batched-bench between
                  its runs, it forgets the KV cache's cells and leaves their contents: the
                  engine, too, decodes over what earlier requests left there
  decode-zeroed   decode-only on a KV cache zeroed first, as a new context's is. On the
                  overhead preset's random weights this alone decodes up to 10% faster (what
                  llama-batched-bench's one run per process gets); on Gemma 3 270M it made no
                  difference (docs/benchmarks.md, fourteenth session)
  decode-pause    decode-only with the decode thread busy for --pause-us a step between two
                  decodes, touching no memory: what a pause of a sampler's length costs the
                  next decode, whatever fills it
  batched-bench   llama.cpp's llama-batched-bench itself (benchmarks/build_peers.sh), a process
                  per round at this level while the others sit idle: ties decode-only to S_TG
  decode-loop     a bare Python loop: one decode of every stream per step and allama's native
                  sampling of every row (no engine, no event loop, no text)
  stream-floor    the same loop on a thread of its own that hands each step's tokens to the
                  event loop (one call_soon_threadsafe a step), where one task per stream
                  awaits its next token: what any engine that streams tokens to asyncio tasks
                  must do at least (no text, no chunks, no bookkeeping)
  allama-stream   Llama.create_completion(stream=True), each stream read with `async for`
  allama-whole    the same requests awaited whole (no per-token work on the event loop)
  allama-serial   allama-stream with overlap_outputs off: a step's tokens become text on the
                  decode thread, after its decode, instead of on the output thread during the
                  next one. The same Llama, its scheduler's switch flipped between rounds, so
                  that both ways decode in the same memory (allama-stream takes --overlap:
                  auto, Llama's default, or on/off)

Every rate is end to end (prompts prefilled in batches of up to 512 tokens, then --max-tokens
tokens per stream). Besides the rates it reports each way's decode time per decode call (longer
where other work shares the cores the decode uses), the event loop's CPU time per token, and
the decode thread's time a step beside the decode (the engine's Python on the step's critical
path; with overlap_outputs, a step's outputs are made during the next decode instead).
allama-stream / stream-floor is the engine's own cost beyond handing tokens to asyncio at all.

    python benchmarks/engine_share.py --kv split
    python benchmarks/engine_share.py --loops asyncio,uvloop   # each way on both event loops
    python benchmarks/engine_share.py --threads 1 --ways allama-stream,allama-serial --rounds 40
                                                      # overlap_outputs against the serial path
    python benchmarks/engine_share.py --ways decode-only,batched-bench,stream-floor,allama-stream
                                                      # how close to S_TG any engine that samples
                                                      # and streams can come here, and allama
    python benchmarks/engine_share.py --smoke          # seconds: CI smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from concurrency import prompts_for  # noqa: E402 - beside this script
from overhead import PEERS_BIN, run_batched  # noqa: E402
from preset_models import preset_model  # noqa: E402

# allama-serial right after allama-stream: their rounds run back to back (rotation aside)
WAYS = ("decode-only", "decode-zeroed", "decode-pause", "batched-bench", "decode-loop", "stream-floor", "allama-whole",
        "allama-stream", "allama-serial")


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

    def run(self, prompts: list[list[int]], post: Callable[[list[int]], None] | None = None,
            sample: bool = True, pause_us: float = 0.0, zero_kv: bool = False) -> dict[str, float]:
        """Generates --max-tokens tokens a stream; `post` (if given) gets each step's tokens.
        Without `sample`, llama-batched-bench's generation: each stream decodes its last prompt
        token again at every position, all rows' logits out, none read. `pause_us`: the thread
        spins that long after each decode (on the clock only). The KV cache's cells are
        forgotten first, and with `zero_kv` their contents zeroed too."""
        native, ctx, batch = self._native, self.ctx, self.batch
        jobs = []
        for row in range(self.n):
            params = native.SamplerParams()
            params.temperature, params.seed = self.temperature, row
            jobs.append((native.SamplerChain(self.model, params), row))
        ctx.memory_clear(zero_kv)
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
        t_gen = time.perf_counter()
        for step in range(self.max_tokens):
            batch.clear()
            for seq in range(self.n):
                batch.add(tokens[seq], pos + step, seq, True)
            t = time.perf_counter()
            ctx.decode(batch)
            decode += time.perf_counter() - t
            calls += 1
            if sample:
                tokens = native.sample_batch(ctx, jobs)
            if pause_us:
                until = time.perf_counter() + pause_us * 1e-6
                while time.perf_counter() < until:
                    pass
            if post is not None:
                post(tokens)
        t1 = time.perf_counter()
        generated = self.n * self.max_tokens
        return {"rate": generated / (t1 - t0), "gen_rate": generated / (t1 - t_gen),
                "decode_us": decode / calls * 1e6, "loop_cpu_us_per_token": 0.0}

    async def stream(self, prompts: list[list[int]]) -> dict[str, float]:
        """run() on a thread of its own, each step's tokens read on this event loop by one task
        per stream (the stream-floor way)."""
        loop = asyncio.get_running_loop()
        queues: list[deque[int]] = [deque() for _ in prompts]
        waiters: list[asyncio.Future[None] | None] = [None] * len(prompts)

        def deliver(tokens: list[int]) -> None:
            for i, token in enumerate(tokens):
                queues[i].append(token)
                waiter = waiters[i]
                if waiter is not None:
                    waiters[i] = None
                    waiter.set_result(None)

        async def reader(i: int) -> None:
            for _ in range(self.max_tokens):
                while not queues[i]:
                    waiter = waiters[i] = loop.create_future()
                    await waiter
                queues[i].popleft()

        done: asyncio.Future[dict[str, float]] = loop.create_future()

        def decode_thread() -> None:
            try:
                figures = self.run(prompts, post=lambda tokens: loop.call_soon_threadsafe(deliver, tokens))
                loop.call_soon_threadsafe(done.set_result, figures)
            except BaseException as exc:  # noqa: BLE001 - raised on the event loop below
                loop.call_soon_threadsafe(done.set_exception, exc)

        cpu0 = time.thread_time()
        thread = threading.Thread(target=decode_thread, name="stream-floor-decode")
        thread.start()
        await asyncio.gather(*(reader(i) for i in range(len(prompts))))
        figures = await done
        thread.join()
        figures["loop_cpu_us_per_token"] = (time.thread_time() - cpu0) / (len(prompts) * self.max_tokens) * 1e6
        return figures

    def close(self) -> None:
        self.ctx.close()
        self.model.close()


def batched_bench(n: int, args: argparse.Namespace) -> dict[str, float]:
    """One llama-batched-bench run at this level in a process of its own (overhead.py's): its
    end-to-end rate (prompts included, as the other ways') and its generation rate, S_TG."""
    result = run_batched(argparse.Namespace(**{**vars(args), "levels": str(n)}))["levels"][n]
    return {"rate": result["e2e"], "gen_rate": result["gen"]}


class Engine:
    """allama in-process, its streams read token by token or awaited whole."""

    def __init__(self, model_path: Path, n: int, args: argparse.Namespace, overlap: bool | None) -> None:
        from allama import Llama

        kv = {"kv_size": args.slot_ctx * n} if args.kv == "unified" else {"kv_unified": False}
        self.llm = Llama(str(model_path), n_ctx=args.slot_ctx, n_parallel=n, n_threads=args.threads,
                         n_threads_batch=args.threads, flash_attn=False, n_keep=0, verbose=False,
                         overlap_outputs=overlap, **kv)
        self.args = args
        self.overlap = self.llm._scheduler.deferred.enabled  # what overlap_outputs resolved to

    async def _one(self, prompt: list[int], seed: int, whole: bool) -> None:
        options = dict(max_tokens=self.args.max_tokens, temperature=self.args.temperature, ignore_eos=True, seed=seed)
        if whole:
            await self.llm.create_completion(prompt, **options)
            return
        stream = await self.llm.create_completion(prompt, stream=True, **options)
        async for _chunk in stream:
            pass

    async def run(self, prompts: list[list[int]], whole: bool, serial: bool = False) -> dict[str, float]:
        self.llm._scheduler.deferred.enabled = self.overlap and not serial  # the engine is idle between rounds
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
                "step_us": (after.step_seconds - before.step_seconds) / steps * 1e6,
                "loop_cpu_us_per_token": loop_cpu / tokens * 1e6}

    def close(self) -> None:
        self.llm.close()


def run_on(loop_kind: str, coroutine: Coroutine[Any, Any, dict[str, float]]) -> dict[str, float]:
    """The coroutine's result, run on a fresh event loop of this kind."""
    if loop_kind == "uvloop":
        import uvloop  # in allama's test extra, not a dependency: `pip install uvloop`

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


# the ways that run on no event loop: once a round, whatever --loops says
LOOPLESS = ("decode-only", "decode-zeroed", "decode-pause", "batched-bench", "decode-loop")


def way_key(way: str, loop_kind: str) -> str:
    """How results name a way on an event loop (the loopless ones run on none)."""
    return way if way in LOOPLESS or loop_kind == "asyncio" else f"{way} ({loop_kind})"


def measure_level(model_path: Path, n: int, args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """`args.rounds` rounds of the ways in turn (on each event loop of --loops; the order
    rotating), on the same prompts per round."""
    overlap = {"auto": None, "on": True, "off": False}[args.overlap]
    loop, engine = DecodeLoop(model_path, n, args), Engine(model_path, n, args, overlap)
    runs = [(way, "asyncio") for way in LOOPLESS if way in args.ways] + \
        [(way, kind) for kind in args.loops for way in args.ways if way not in LOOPLESS]
    rounds: dict[str, list[dict[str, float]]] = {way_key(way, kind): [] for way, kind in runs}

    def one(way: str, kind: str, prompts: list[list[int]]) -> dict[str, float]:
        if way == "decode-loop":
            return loop.run(prompts)
        if way == "decode-only":
            return loop.run(prompts, sample=False)
        if way == "decode-zeroed":
            return loop.run(prompts, sample=False, zero_kv=True)
        if way == "decode-pause":
            return loop.run(prompts, sample=False, pause_us=args.pause_us)
        if way == "batched-bench":
            return batched_bench(n, args)
        if way == "stream-floor":
            return run_on(kind, loop.stream(prompts))
        if way == "allama-serial":
            return run_on(kind, engine.run(prompts, whole=False, serial=True))
        return run_on(kind, engine.run(prompts, whole=way == "allama-whole"))

    try:
        warm = prompts_for(n, args.prompt_tokens, args.n_vocab, 999, 1)
        for way, kind in runs:  # a round of each first, not counted: the first request of a process
            if way != "batched-bench":  # a process of its own every round
                one(way, kind, warm)
        for r in range(args.rounds):
            prompts = prompts_for(n, args.prompt_tokens, args.n_vocab, 1000 * n + r, 1)
            shift = r % len(runs)
            for way, kind in runs[shift:] + runs[:shift]:
                rounds[way_key(way, kind)].append(one(way, kind, prompts))
    finally:
        engine.close()
        loop.close()
    return rounds


def spread(values: list[float], digits: int = 2, unit: str = "") -> str:
    """median [min-max]"""
    return f"{statistics.median(values):,.{digits}f}{unit} [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"


def paired(ways: list[dict[str, float]], bases: list[dict[str, float]], figure: str = "rate") -> str:
    """The rounds' ratios of `figure`: geometric mean, its 95% interval, the rounds above 1."""
    logs = [math.log(r[figure] / b[figure]) for r, b in zip(ways, bases)]
    mean = statistics.mean(logs)
    half = 1.96 * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else math.inf
    return (f"{math.exp(mean):.3f}x [{math.exp(mean - half):.3f}-{math.exp(mean + half):.3f}], "
            f"above in {sum(x > 0 for x in logs)} of {len(logs)}")


def decode_ratio(ways: list[dict[str, float]], bases: list[dict[str, float]]) -> float:
    """The median over the rounds of the way's decode time a call against the base's."""
    return statistics.median(r["decode_us"] / b["decode_us"] for r, b in zip(ways, bases))


def limit_table(results: dict[int, dict[str, list[dict[str, float]]]]) -> list[str]:
    """Each way against decode-only, llama-batched-bench's own loop in this process: end-to-end
    rates, and batched-bench's S_TG against decode-only's generation rate."""
    ways = [way for way in ("decode-zeroed", "decode-pause", "decode-loop", "stream-floor", "allama-stream",
                            "allama-whole")
            if any(way in rounds for rounds in results.values())]
    lines = ["", "Against decode-only (llama-batched-bench's generation loop, in this process), paired per "
             "round: geometric mean [95% interval], rounds above it:", "",
             "| streams | decode-only tok/s, end to end | batched-bench S_TG / decode-only generation | "
             + " | ".join(f"{way} / decode-only" for way in ways)
             + " | decode µs a call / decode-only's, medians: " + ", ".join(ways) + " |",
             "|---:|---:|---:|" + "---:|" * (len(ways) + 1)]
    for n, rounds in results.items():
        if "decode-only" not in rounds:
            continue
        base = rounds["decode-only"]
        cells = [paired(rounds["batched-bench"], base, "gen_rate") if "batched-bench" in rounds else "-"]
        cells += [paired(rounds[way], base) if way in rounds else "-" for way in ways]
        cells.append(", ".join(f"{decode_ratio(rounds[way], base):.3f}" if way in rounds else "-" for way in ways))
        lines.append(f"| {n} | {spread([r['rate'] for r in base], 0)} | " + " | ".join(cells) + " |")
    return lines


def table(results: dict[int, dict[str, list[dict[str, float]]]], loops: list[str]) -> str:
    lines = ["| streams | event loop | decode-loop tok/s | stream-floor / decode-loop | allama-stream / decode-loop "
             "| allama-whole / decode-loop | allama-stream / stream-floor | allama-stream / allama-serial "
             "| decode µs a call: loop, floor, whole, stream | event loop CPU µs a token: floor, whole, stream "
             "| decode thread µs a step beside the decode: serial, stream |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, rounds in results.items():
        base = [r["rate"] for r in rounds["decode-loop"]]
        for kind in loops:
            def key(way: str) -> str:
                return way_key(way, kind)  # noqa: B023 - used within this iteration

            def ratio(way: str, against: str = "decode-loop") -> str:
                if key(way) not in rounds or key(against) not in rounds:
                    return "-"
                return spread([r["rate"] / b["rate"] for r, b in zip(rounds[key(way)], rounds[key(against)])],
                              unit="x")

            def median_of(way: str, figure: Callable[[dict[str, float]], float], fmt: str) -> str:
                if key(way) not in rounds:
                    return "-"
                return format(statistics.median(figure(r) for r in rounds[key(way)]), fmt)

            def decode(way: str) -> str:
                return median_of(way, lambda r: r["decode_us"], ",.0f")

            def beside(way: str) -> str:
                return median_of(way, lambda r: r["step_us"] - r["decode_us"], ",.0f")

            def cpu(way: str) -> str:
                return median_of(way, lambda r: r["loop_cpu_us_per_token"], ".1f")

            lines.append(f"| {n} | {kind} | {spread(base, 0)} | {ratio('stream-floor')} | {ratio('allama-stream')} "
                         f"| {ratio('allama-whole')} | {ratio('allama-stream', 'stream-floor')} "
                         f"| {ratio('allama-stream', 'allama-serial')} "
                         f"| {decode('decode-loop')}, {decode('stream-floor')}, {decode('allama-whole')}, "
                         f"{decode('allama-stream')} | {cpu('stream-floor')}, {cpu('allama-whole')}, "
                         f"{cpu('allama-stream')} | {beside('allama-serial')}, {beside('allama-stream')} |")
    pairs = [(n, rounds) for n, rounds in results.items() if "allama-serial" in rounds and "allama-stream" in rounds]
    if pairs:
        lines += ["", "allama-stream / allama-serial, rounds back to back: geometric mean, its 95% interval, and "
                  "the rounds where allama-stream was faster:", ""]
        for n, rounds in pairs:
            lines.append(f"- {n} streams: {paired(rounds['allama-stream'], rounds['allama-serial'])}")
    if any("decode-only" in rounds for rounds in results.values()):
        lines += limit_table(results)
    if len(loops) > 1:
        first = loops[0]
        lines += ["", f"Each way on the other event loops against the same way on {first}, paired per round:", "",
                  "| streams | event loop | stream-floor | allama-stream | allama-whole |", "|---:|---|---:|---:|---:|"]
        for n, rounds in results.items():
            for kind in loops[1:]:
                cells = [spread([r["rate"] / b["rate"] for r, b in zip(rounds[way_key(way, kind)],
                                                                       rounds[way_key(way, first)])], unit="x")
                         for way in ("stream-floor", "allama-stream", "allama-whole")]
                lines.append(f"| {n} | {kind} / {first} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a GGUF model; default: the --preset model (built if missing)")
    parser.add_argument("--preset", default="overhead",
                        help="allama.testing's llama preset to build when no --model is given: overhead (4 layers "
                             "of 128, F16) or tiny (2 layers of 64, F32: a faster decode)")
    parser.add_argument("--levels", default="1,8,32,64")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of each way per level")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kv", choices=["unified", "split"], default="split")
    parser.add_argument("--loops", default="asyncio",
                        help="the event loops the streams are read on, comma-separated: asyncio, uvloop "
                             "(pip install uvloop); each round runs every way on each")
    parser.add_argument("--ways", default=",".join(way for way in WAYS if way != "batched-bench"),
                        help="the ways to run, comma-separated (decode-loop always runs: the ratios' base)")
    parser.add_argument("--pause-us", type=float, default=120.0,
                        help="decode-pause's spin between two decodes (default: about 8 rows' sampling here)")
    parser.add_argument("--overlap", choices=["auto", "on", "off"], default="auto",
                        help="allama-stream's overlap_outputs: Llama's default, or forced")
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 2 rounds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.levels, args.rounds, args.prompt_tokens, args.max_tokens = "1,4", 2, 8, 8
    args.loops = args.loops.split(",")
    asked = args.ways.split(",")
    if set(asked) - set(WAYS):
        parser.error(f"--ways: some of {', '.join(WAYS)}, not {args.ways}")
    args.ways = [way for way in WAYS if way in asked or way == "decode-loop"]
    if "batched-bench" in args.ways and not (PEERS_BIN / "llama-batched-bench").exists():
        parser.error("--ways batched-bench: llama-batched-bench is not built (bash benchmarks/build_peers.sh)")
    if set(args.loops) - {"asyncio", "uvloop"}:
        parser.error(f"--loops: asyncio or uvloop, not {args.loops}")
    args.model = args.model or preset_model(args.preset)
    args.slot_ctx = args.prompt_tokens + args.max_tokens + 8
    from allama import _native

    params = _native.ModelParams()
    params.vocab_only = True
    vocab_model = _native.Model.load(str(args.model), params)
    args.n_vocab = _native.Vocab(vocab_model).n_tokens
    vocab_model.close()
    print(f"model {args.model}; {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{args.threads} threads; prompt {args.prompt_tokens}, generate {args.max_tokens}, "
          f"temperature {args.temperature}; KV {args.kv}; overlap {args.overlap}; {args.rounds} rounds; "
          f"event loops {', '.join(args.loops)}", file=sys.stderr)
    results = {}
    for n in (int(x) for x in args.levels.split(",")):
        results[n] = measure_level(args.model, n, args)
        print(f"{n} streams done", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({str(n): r for n, r in results.items()}, indent=1))
    print("Rates end to end, ratios per round (median [min-max]); each level's ways alternate in one process.\n")
    print(table(results, args.loops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
