"""Engine overhead: allama against llama.cpp on a model so fast that the engine's own work shows.

The model is a tiny llama (4 layers of 128, F16; allama.testing's "overhead" preset): a
decode step costs well under a millisecond per sequence, as a small model does on a GPU.
At each level, that many streams start together, each with a distinct prompt of
--prompt-tokens tokens, and generate --max-tokens tokens (temperature 0.8, EOS ignored).

  allama            in-process: one Llama, n_parallel = the largest level, `async for` streams
  allama-server     `python -m allama.server`, streaming /v1/completions
  llama-server      llama.cpp's server on the same build (benchmarks/build_peers.sh), same requests
  batched-bench     llama.cpp's llama-batched-bench (no sampling, no server): the ceiling
  decode-loop       the floor under any engine that samples: the same decode plus allama's
                    native sampling of every row, driven by a bare Python loop (no engine, no
                    event loop, no text); allama / decode-loop is the engine's own cost

Each system runs --runs times, each run in a fresh process, so that a process that starts
slow shows. Rates are generated tokens per second:

  gen      the generation phase only (from the last stream's first token to the first
           stream's last token), comparable with batched-bench's S_TG
  e2e      every generated token over the wall time, prompts included

With --whole, allama in-process awaits whole results instead of streams (no per-token work
on the event loop); its figure is then end to end, and so is batched-bench's beside it.

KV layouts: allama and both servers run with a unified KV cache ("unified") and with one
KV stream per sequence ("split", llama-server's default); --kv picks.

    bash benchmarks/build_peers.sh                     # llama-batched-bench, llama-server
    python benchmarks/overhead.py --plot docs/benchmarks-overhead.png
    python benchmarks/overhead.py --smoke              # seconds: CI smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from concurrency import prompts_for  # noqa: E402 - beside this script
from http_serving import RunningServer, ServerSpec, Unavailable  # noqa: E402
from preset_models import preset_model  # noqa: E402
from throughput_plot import Series, plot_throughput  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEERS_BIN = ROOT / "build" / "peers" / "bin"
SYSTEMS = ("allama", "allama-server", "llama-server", "batched-bench", "decode-loop")


def vocab_size(model: Path) -> int:
    from allama import _native

    params = _native.ModelParams()
    params.vocab_only = True
    loaded = _native.Model.load(str(model), params)
    try:
        return _native.Vocab(loaded).n_tokens
    finally:
        loaded.close()


def prompts(n: int, args: argparse.Namespace) -> list[list[int]]:
    """`n` distinct prompts (BOS 1, then random tokens), the same for every system."""
    return prompts_for(n, args.prompt_tokens, args.n_vocab, n, 1)


def rates(stamps: list[list[float]], t0: float, t1: float) -> dict[str, float]:
    """gen and e2e rates from each stream's token arrival times (one per token)."""
    total = sum(len(s) for s in stamps)
    start = max(s[0] for s in stamps)
    end = min(s[-1] for s in stamps)
    inside = sum(1 for s in stamps for t in s if start < t <= end)
    gen = inside / (end - start) if end > start else float("nan")
    return {"gen": gen, "e2e": total / (t1 - t0), "tokens": total}


# --------------------------------------------------------------------------- allama in-process (child)

def run_allama(args: argparse.Namespace) -> dict:
    from allama import Llama

    levels = [int(x) for x in args.levels.split(",")]
    slot_ctx = args.prompt_tokens + args.max_tokens + 8
    kv = {"kv_size": slot_ctx * max(levels)} if args.kv == "unified" else {"kv_unified": False}
    llm = Llama(str(args.model), n_ctx=slot_ctx, n_parallel=max(levels),
                n_threads=args.threads, n_threads_batch=args.threads, flash_attn=False, n_keep=0, verbose=False, **kv)
    out: dict = {"levels": {}}

    async def one(prompt: list[int], stamps: list[float]) -> None:
        if args.whole:  # no per-token work on the event loop: one wake-up per request
            await llm.create_completion(prompt, max_tokens=args.max_tokens, temperature=args.temperature,
                                        ignore_eos=True, seed=0)
            stamps.append(time.perf_counter())
            return
        stream = await llm.create_completion(prompt, max_tokens=args.max_tokens, temperature=args.temperature,
                                             ignore_eos=True, stream=True, seed=len(stamps))
        async for _chunk in stream:
            stamps.append(time.perf_counter())

    async def level(n: int) -> dict:
        batch = prompts(n, args)
        stamps: list[list[float]] = [[] for _ in batch]
        before = llm.stats()
        cpu0 = time.thread_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(one(p, s) for p, s in zip(batch, stamps)))
        t1 = time.perf_counter()
        loop_cpu = time.thread_time() - cpu0
        after = llm.stats()
        tokens = after.tokens_generated - before.tokens_generated
        result = rates(stamps, t0, t1) if not args.whole else {"gen": tokens / (t1 - t0), "e2e": tokens / (t1 - t0),
                                                                "tokens": tokens}
        steps = after.decode_calls - before.decode_calls
        result.update(
            steps=steps,
            step_us=(after.step_seconds - before.step_seconds) / steps * 1e6,
            decode_us=(after.decode_seconds - before.decode_seconds) / steps * 1e6,
            sample_us=(after.sample_seconds - before.sample_seconds) / steps * 1e6,
            loop_cpu_us_per_token=loop_cpu / tokens * 1e6)
        return result

    try:
        for n in levels:
            out["levels"][n] = asyncio.run(level(n))
    finally:
        llm.close()
    return out


# --------------------------------------------------------------------------- decode loop (child)

def run_decode_loop(args: argparse.Namespace) -> dict:
    """Each level: prefill every stream's prompt but its last token, then --max-tokens steps that
    decode one token of every stream and sample every row in one native call; gen is the rate
    of those steps. The context is made as the engine makes its own (same sequences, cells,
    threads, layout)."""
    from allama import _native

    levels = [int(x) for x in args.levels.split(",")]
    n_max = max(levels)
    model = _native.Model.load(str(args.model), _native.ModelParams())
    cp = _native.ContextParams()
    cp.n_seq_max = n_max
    cp.kv_unified = args.kv == "unified"
    cp.n_ctx = (args.prompt_tokens + args.max_tokens + 8) * n_max
    cp.n_threads = cp.n_threads_batch = args.threads
    cp.n_batch = cp.n_ubatch = 512
    cp.flash_attn_type = 0
    ctx = _native.Context(model, cp)
    batch = _native.Batch(512, 1)
    out: dict = {"levels": {}}
    try:
        for n in levels:
            ctx.memory_clear(False)  # the cells' contents stay, as between an engine's requests
            batch_prompts = prompts(n, args)
            for seq, prompt in enumerate(batch_prompts):
                batch.clear()
                batch.add_tokens(prompt[:-1], 0, seq, False)
                ctx.decode(batch)
            chains = []
            for seq in range(n):
                params = _native.SamplerParams()
                params.temperature, params.seed = args.temperature, seq
                chains.append(_native.SamplerChain(model, params))
            jobs = [(chain, row) for row, chain in enumerate(chains)]
            tokens = [prompt[-1] for prompt in batch_prompts]
            pos = args.prompt_tokens - 1
            t0 = time.perf_counter()
            for step in range(args.max_tokens):
                batch.clear()
                for seq in range(n):
                    batch.add(tokens[seq], pos + step, seq, True)
                ctx.decode(batch)
                tokens = _native.sample_batch(ctx, jobs)
            rate = n * args.max_tokens / (time.perf_counter() - t0)
            out["levels"][n] = {"gen": rate, "e2e": rate, "tokens": n * args.max_tokens}
    finally:
        ctx.close()
        model.close()
    return out


# --------------------------------------------------------------------------- servers

async def _stream_completion(host: str, port: int, body: bytes) -> tuple[int, list[float]]:
    """One streaming /v1/completions request over a raw connection (a light client, so that
    the client's own CPU takes little from the servers on the same cores): the completion
    tokens its usage reports, and the arrival time of each text chunk."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
    await writer.drain()
    stamps: list[float] = []
    usage: dict = {"completion_tokens": 0}
    tail = b""
    head_done = False
    while True:
        data = await reader.read(65536)
        if not data:
            break
        now = time.perf_counter()
        data = tail + data
        if not head_done:
            if b"\r\n\r\n" not in data:
                tail = data
                continue
            status = data.split(b"\r\n", 1)[0]
            if b" 200 " not in status:
                raise RuntimeError(f"{status!r}: {data[-300:]!r}")
            head_done = True
        # count complete `data: {...}` events that carry text (not the usage-only or [DONE] ones)
        *events, tail = data.split(b"\n\n")
        for event in events:
            if b'"usage":{' in event.replace(b" ", b""):
                usage = json.loads(event.split(b"data:", 1)[1])["usage"]
            elif b'"text"' in event:
                stamps.append(now)
    writer.close()
    return usage["completion_tokens"], stamps


async def _server_levels(host: str, port: int, levels: list[int], args: argparse.Namespace) -> dict:
    out: dict = {}
    for n in levels:
        bodies = [json.dumps({"prompt": p, "max_tokens": args.max_tokens, "temperature": args.temperature,
                              "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True,
                              "seed": i}).encode()
                  for i, p in enumerate(prompts(n, args))]
        t0 = time.perf_counter()
        replies = await asyncio.gather(*(_stream_completion(host, port, b) for b in bodies))
        t1 = time.perf_counter()
        short = [tokens for tokens, _ in replies if tokens != args.max_tokens]
        if short:
            raise RuntimeError(f"{len(short)} streams did not generate {args.max_tokens} tokens ({short[:4]})")
        out[n] = rates([stamps for _, stamps in replies], t0, t1)
        out[n]["e2e"] = n * args.max_tokens / (t1 - t0)  # (a chunk may hold no text, or several tokens)
    return out


def server_spec(system: str, args: argparse.Namespace) -> ServerSpec:
    n = max(int(x) for x in args.levels.split(","))
    slot_ctx = args.prompt_tokens + args.max_tokens + 8
    threads = str(args.threads)
    if system == "allama-server":
        return ServerSpec("allama-server", lambda port: [
            sys.executable, "-m", "allama.server", "--model", str(args.model), "--n_ctx", str(slot_ctx),
            "--n_parallel", str(n), "--n_threads", threads, "--n_threads_batch", threads, "--flash_attn", "false",
            *(["--kv_size", str(slot_ctx * n)] if args.kv == "unified" else ["--kv_unified", "false"]), "--host", "127.0.0.1", "--port", str(port)],
            "/health")
    exe = PEERS_BIN / "llama-server"
    spec = ServerSpec("llama-server", lambda port: [
        str(exe), "-m", str(args.model), "-c", str(slot_ctx * n), "--parallel", str(n), "-t", threads,
        "-tb", threads, "-fa", "off", *(["-kvu"] if args.kv == "unified" else []), "--log-disable",
        "--host", "127.0.0.1", "--port", str(port)], "/health")
    if not exe.exists():
        spec.missing = f"{exe.relative_to(ROOT)} is not built: run benchmarks/build_peers.sh"
    return spec


def run_server(system: str, args: argparse.Namespace) -> dict:
    spec = server_spec(system, args)
    levels = [int(x) for x in args.levels.split(",")]

    async def main() -> dict:
        with tempfile.TemporaryDirectory() as logs:
            async with RunningServer(spec, Path(logs), 120.0) as server:
                return {"levels": await _server_levels("127.0.0.1", server.port, levels, args)}

    return asyncio.run(main())


# --------------------------------------------------------------------------- llama-batched-bench

def run_batched(args: argparse.Namespace) -> dict:
    exe = PEERS_BIN / "llama-batched-bench"
    if not exe.exists():
        raise Unavailable("llama-batched-bench is not built: run benchmarks/build_peers.sh")
    levels = [int(x) for x in args.levels.split(",")]
    ctx = max(levels) * (args.prompt_tokens + args.max_tokens) + 64
    cmd = [str(exe), "-m", str(args.model), "-c", str(ctx), "-b", "512", "-ub", "512", "-npp", str(args.prompt_tokens),
           "-ntg", str(args.max_tokens), "-npl", args.levels, "-t", str(args.threads), "-tb", str(args.threads),
           "-fa", "off", "--output-format", "jsonl", *(["-kvu"] if args.kv == "unified" else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out: dict = {"levels": {}}
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith("{") and '"speed_tg"' in line:
            row = json.loads(line)
            n = int(row["pl"])
            out["levels"][n] = {"gen": float(row["speed_tg"]), "e2e": n * int(row["tg"]) / float(row["t"]),
                                "tokens": n * int(row["tg"])}
    return out


# --------------------------------------------------------------------------- driver

def one_run(system: str, args: argparse.Namespace) -> dict:
    """One run of a system in a fresh process (this script, --child)."""
    if system == "batched-bench":
        return json.loads(json.dumps(run_batched(args)))  # level keys as strings, as a child's come
    cmd = [sys.executable, __file__, "--child", system, "--model", str(args.model), "--levels", args.levels,
           "--prompt-tokens", str(args.prompt_tokens), "--max-tokens", str(args.max_tokens),
           "--threads", str(args.threads), "--temperature", str(args.temperature), "--kv", args.kv,
           *(["--whole"] if args.whole else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{system} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(results: dict[str, list[dict]], levels: list[int], args: argparse.Namespace) -> str:
    def per_run(system: str, n: int, key: str) -> list[float]:
        return [run["levels"][str(n)][key] for run in results.get(system, [])]

    lines = [f"KV: {args.kv}; each figure is the median of {args.runs} runs in fresh processes, [min-max]; "
             "ratios are per run (run i of one system against run i of its peer), min / median.", ""]
    lines.append("| streams | allama gen tok/s | batched-bench S_TG | allama / S_TG | allama-server e2e "
                 "| llama-server e2e | allama-server / llama-server | allama step: decode + sample + rest µs |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")

    def cell(values: list[float]) -> str:
        if not values:
            return "-"
        return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"

    def ratio(a: list[float], b: list[float]) -> str:
        pairs = [x / y for x, y in zip(a, b) if y]
        if not pairs:
            return "-"
        return f"{min(pairs):.2f}x / {statistics.median(pairs):.2f}x"

    for n in levels:
        a_gen = per_run("allama", n, "gen")
        b_gen = per_run("batched-bench", n, "e2e" if args.whole else "gen")
        s_e2e = per_run("allama-server", n, "e2e")
        l_e2e = per_run("llama-server", n, "e2e")
        split = "-"
        if results.get("allama"):
            step = statistics.median(per_run("allama", n, "step_us"))
            dec = statistics.median(per_run("allama", n, "decode_us"))
            smp = statistics.median(per_run("allama", n, "sample_us"))
            split = f"{step:.0f}: {dec:.0f} + {smp:.0f} + {step - dec - smp:.0f}"
        lines.append(f"| {n} | {cell(a_gen)} | {cell(b_gen)} | {ratio(a_gen, b_gen)} | {cell(s_e2e)} | {cell(l_e2e)} "
                     f"| {ratio(s_e2e, l_e2e)} | {split} |")
    if results.get("decode-loop"):
        lines += ["", "| streams | decode-loop tok/s | decode-loop / S_TG | allama / decode-loop |", "|---:|---:|---:|---:|"]
        for n in levels:
            loop_gen = per_run("decode-loop", n, "gen")
            lines.append(f"| {n} | {cell(loop_gen)} | {ratio(loop_gen, per_run('batched-bench', n, 'gen'))} "
                         f"| {ratio(per_run('allama', n, 'gen'), loop_gen)} |")
    return "\n".join(lines)


def plot(results: dict[str, list[dict]], levels: list[int], path: Path) -> None:
    series: Series = {}
    styles = {"allama": ("gen", "o-"), "batched-bench": ("gen", "k--"), "decode-loop": ("gen", "k-."),
              "allama-server": ("e2e", "s-"), "llama-server": ("e2e", "k:")}
    for system, (key, style) in styles.items():
        runs = results.get(system)
        if runs:
            ys = [statistics.median(r["levels"][str(n)][key] for r in runs)
                  for n in levels]
            series[f"{system} ({'generation phase' if key == 'gen' else 'end to end'})"] = (levels, ys, style)
    plot_throughput(series, path, "concurrent streams", "generated tokens/s (aggregate)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a GGUF model; default: the tiny overhead model (built if missing)")
    parser.add_argument("--levels", default="1,8,32,64")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per system")
    parser.add_argument("--kv", choices=["unified", "split"], default="unified")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run, allama only")
    parser.add_argument("--whole", action="store_true",
                        help="allama in-process takes whole results, not streams: no per-token work on the event "
                             "loop; its gen is then its end-to-end rate, compared with batched-bench's end-to-end")
    parser.add_argument("--interleave", action="store_true",
                        help="one process per system and level, the systems of a level back to back (pairs the "
                             "runs of a ratio closely in time, on a machine whose speed drifts)")
    parser.add_argument("--child", choices=["allama", "allama-server", "llama-server", "decode-loop"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.levels, args.prompt_tokens, args.max_tokens, args.runs = "1,4", 8, 8, 1
        args.systems = "allama,allama-server,decode-loop"
    args.model = args.model or preset_model("overhead")
    args.n_vocab = vocab_size(args.model)
    if args.child:
        children = {"allama": run_allama, "decode-loop": run_decode_loop}
        result = children[args.child](args) if args.child in children else run_server(args.child, args)
        print(json.dumps(result))
        return 0

    levels = [int(x) for x in args.levels.split(",")]
    print(f"model {args.model}; {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{args.threads} threads; prompt {args.prompt_tokens}, generate {args.max_tokens}, "
          f"temperature {args.temperature}; KV {args.kv}", file=sys.stderr)
    results: dict[str, list[dict]] = {}
    # --interleave: every (system, level) in a process of its own, the systems of one level
    # back to back, so that the runs a ratio pairs are seconds apart rather than minutes
    level_sets = [str(n) for n in levels] if args.interleave else [args.levels]
    skipped: set[str] = set()
    for i in range(args.runs):
        for level_set in level_sets:
            for system in args.systems.split(","):
                if system in skipped:
                    continue
                try:
                    run = one_run(system, argparse.Namespace(**{**vars(args), "levels": level_set}))
                except Unavailable as exc:
                    print(f"{system}: skipped ({exc})", file=sys.stderr)
                    skipped.add(system)
                    continue
                runs = results.setdefault(system, [])
                if len(runs) <= i:
                    runs.append({"levels": {}})
                runs[i]["levels"].update(run["levels"])
                gens = ", ".join(f"{n}: {v['gen']:,.0f}/{v['e2e']:,.0f}" for n, v in run["levels"].items())
                print(f"run {i + 1} {system} (gen/e2e tok/s) {gens}", file=sys.stderr)
    print(summarize(results, levels, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot:
        plot(results, levels, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
