"""Soak test of `allama serve`: many mixed requests, some abandoned, then what is left behind.

Starts the server (benchmarks/soak_server.py: `allama serve` plus a memory probe) on a
tiny random llama with 8 slots, on a free loopback port, and keeps --clients requests in
flight: completions, chat completions (both streamed and not), embeddings, with varied
lengths, shared prefixes, stop strings, logprobs, n=2 and JSON mode. --cancel of them are
abandoned: mid-stream (the client closes after a few chunks) or before the response (the
client gives up after a random delay, usually while the request is queued or running).

Criteria (the script exits 1 when one fails):
  5xx           no request that was not abandoned gets a 5xx, an error event or a transport error
  stuck         no request takes longer than --stuck-after seconds (a deadlock or a lost wake-up)
  leaked        afterwards /metrics shows 0 sequences active, 0 queued, no HTTP request in flight
  RSS growth    VmRSS after the run vs after the warm-up (both idle, after a gc.collect) < --max-rss-growth %

Before the warm-up, a long embedding input and a burst of long prompts take llama.cpp's
buffers to their high-water marks (see `prime`): otherwise VmRSS creeps up for thousands of
requests as bigger batches come along, which is bounded, not a leak. The server's probe
(--trace, --malloc-trim) tells Python-heap growth, malloc's own and the rest apart.

    python benchmarks/soak.py                            # 10,000 requests, 32 clients
    python benchmarks/soak.py --seconds 45 --warmup 300 --clients 16   # the CI version (tests/test_soak.py)
    python benchmarks/soak.py --trace 8 --malloc-trim    # where memory grows: tracemalloc, gc, malloc
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from concurrency import default_model, pct  # beside this script: the cached tiny model, percentiles
from soak_server import vm_rss_kb

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"completion": 0.2, "completion-stream": 0.25, "chat": 0.2, "chat-stream": 0.25, "embedding": 0.1}
WORDS = ("river mountain clock moon bread violin glacier bee lighthouse chess desert train coral map thunder owl "
         "garden copper lantern harbor winter orchard canyon meadow falcon ember quartz willow tide signal "
         "archive compass velvet saddle marble orbit fern basalt").split()
SYSTEM_PROMPTS = [" ".join(random.Random(k).choices(WORDS, k=60)) for k in range(4)]


@dataclass
class Outcome:
    """One request as the client saw it."""

    kind: str
    cancel: str | None  # None, "before" (gave up before the response ended) or "mid-stream"
    latency: float = 0.0
    status: int | None = None
    error: str | None = None  # an unexpected failure (5xx, error event, transport error)
    stuck: bool = False
    cancelled: bool = False  # the cancellation happened (the reply had not ended by then)


@dataclass
class Plan:
    kind: str
    body: dict
    cancel: str | None
    delay: float = 0.0   # before: seconds until the client gives up
    chunks: int = 0      # mid-stream: chunks read before closing


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def plan_request(rng: random.Random, number: int, cancel_fraction: float) -> Plan:
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    stream = kind.endswith("-stream")
    text = f"Request {number}: " + words(rng, rng.randint(3, 120))
    if rng.random() < 0.3:  # a shared prefix: kept sequences and seq_cp are exercised
        text = rng.choice(SYSTEM_PROMPTS) + " " + text
    if kind == "embedding":
        body: dict = {"input": text if rng.random() < 0.6 else [words(rng, rng.randint(1, 40))
                                                               for _ in range(rng.randint(2, 6))]}
        if rng.random() < 0.2:
            body["encoding_format"] = "base64"
    else:
        body = {"max_tokens": rng.randint(1, 32), "temperature": rng.choice([0.0, 0.7, 1.0]),
                "seed": rng.randint(0, 2**31), "ignore_eos": rng.random() < 0.5}
        if rng.random() < 0.2:
            body["stop"] = rng.choice([["."], ["\n"], ["river", "moon"]])
        if rng.random() < 0.1:
            body["n"] = 2
        if stream:
            body["stream"] = True
            if rng.random() < 0.5:
                body["stream_options"] = {"include_usage": True}
        if kind.startswith("completion"):
            body["prompt"] = text
            if rng.random() < 0.1:
                body["logprobs"] = 2
        else:
            body["messages"] = [{"role": "user", "content": text}]
            if rng.random() < 0.3:
                body["messages"] = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)},
                                    {"role": "assistant", "content": words(rng, 8)}, *body["messages"]]
            if rng.random() < 0.1:
                body["logprobs"], body["top_logprobs"] = True, 2
            if rng.random() < 0.05:
                body["response_format"] = {"type": "json_object"}
    cancel = None
    if rng.random() < cancel_fraction:
        cancel = "mid-stream" if stream and rng.random() < 0.5 else "before"
    return Plan(kind, body, cancel, delay=rng.uniform(0.0, 0.25), chunks=rng.randint(1, 4))


PATHS = {"completion": "/v1/completions", "chat": "/v1/chat/completions", "embedding": "/v1/embeddings"}


async def send(client: httpx.AsyncClient, base: str, plan: Plan, outcome: Outcome) -> None:
    """Sends the request and reads the reply (or part of it, for mid-stream cancellations)."""
    url = base + PATHS[plan.kind.removesuffix("-stream")]
    async with client.stream("POST", url, json=plan.body) as response:
        outcome.status = response.status_code
        if response.status_code != 200:
            text = (await response.aread())[:200]
            outcome.error = f"HTTP {response.status_code}: {text!r}"
            return
        if not plan.body.get("stream"):
            data = json.loads(await response.aread())
            if "error" in data or not data.get("data" if plan.kind == "embedding" else "choices"):
                outcome.error = f"bad reply: {str(data)[:200]}"
            return
        chunks = 0
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            chunk = json.loads(data)
            if "error" in chunk:
                outcome.error = f"error event: {str(chunk['error'])[:200]}"
                return
            chunks += 1
            if plan.cancel == "mid-stream" and chunks >= plan.chunks:
                outcome.cancelled = True
                return  # leaving the `async with` closes the connection mid-stream
        outcome.error = "the stream ended without [DONE]"


async def run_one(client: httpx.AsyncClient, base: str, plan: Plan, stuck_after: float) -> Outcome:
    outcome = Outcome(plan.kind, plan.cancel)
    start = time.perf_counter()
    task = asyncio.ensure_future(send(client, base, plan, outcome))
    limit = plan.delay if plan.cancel == "before" else stuck_after
    done, _ = await asyncio.wait({task}, timeout=limit)
    if not done:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - a cancelled request may fail any which way
            pass
        if plan.cancel == "before":
            outcome.cancelled = True
        else:
            outcome.stuck = True
            outcome.error = f"no reply within {stuck_after:.0f} s"
    else:
        try:
            task.result()
        except (httpx.HTTPError, json.JSONDecodeError, ValueError) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.latency = time.perf_counter() - start
    if outcome.cancelled:
        outcome.error = None  # what an abandoned request saw does not count
    return outcome


async def run_phase(client: httpx.AsyncClient, base: str, rng: random.Random, first: int, count: int,
                    deadline: float, args: argparse.Namespace, samples: list, done_before: int = 0) -> list[Outcome]:
    """Keeps args.clients requests in flight until `count` are done or `deadline` passes; every
    2 s appends (requests done, the server's VmRSS in KiB) to `samples`."""
    outcomes: list[Outcome] = []
    numbers = iter(range(first, first + count))

    async def worker() -> None:
        for number in numbers:
            if time.monotonic() >= deadline:
                return
            outcomes.append(await run_one(client, base, plan_request(rng, number, args.cancel), args.stuck_after))

    async def sampler() -> None:
        while True:
            await asyncio.sleep(2.0)
            samples.append((done_before + len(outcomes), vm_rss_kb(args.pid)))

    sampling = asyncio.ensure_future(sampler())
    try:
        await asyncio.gather(*(worker() for _ in range(args.clients)))
    finally:
        sampling.cancel()
    return outcomes


async def prime(client: httpx.AsyncClient, base: str, n_parallel: int, n_ctx: int) -> None:
    """Takes the server's native buffers to their high-water marks before the first memory
    reading. Each grows to the largest batch seen so far and stays: bounded, but with random
    traffic VmRSS creeps up for thousands of requests as bigger batches come along.

    - An embedding batch is decoded with every token as an output, and llama.cpp keeps n_vocab
      logits per output (a generation model computes them, though an embedding needs none): in
      the output buffer, reallocated to the largest batch so far, and in the compute buffer,
      reserved for a full batch but resident only as far as a batch has used it: about
      2 x 4 x n_vocab bytes per token of the largest embedding batch, up to n_batch tokens.
      One input longer than a batch (truncated to one) gets there at once.
    - ggml's CPU backend keeps one work buffer per context, reallocated to the largest graph
      so far; without flash attention its largest use is the F16 copy of the KQ matrix,
      n_kv x batch tokens x n_head x 2 bytes, so it grows as prefill batches meet a fuller KV
      cache. 2 x n_parallel long prompts at once fill the cache with full prefill batches.
    """
    response = await client.post(base + "/v1/embeddings", json={"input": " ".join(WORDS * 40)})
    response.raise_for_status()
    sample = " ".join(WORDS * 20)
    count = (await client.post(base + "/extras/tokenize/count", json={"input": sample})).json()["count"]
    n_words = max(1, int(len(WORDS) * 20 * (n_ctx - 48) / count))
    rng = random.Random(1)
    bodies = [{"prompt": f"{k} " + words(rng, n_words), "max_tokens": 4, "temperature": 0.0}
              for k in range(2 * n_parallel)]
    for response in await asyncio.gather(*(client.post(base + "/v1/completions", json=b) for b in bodies)):
        response.raise_for_status()


# --------------------------------------------------------------------------- server

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric_values(text: str) -> dict[str, float]:
    """Prometheus text as {name: value}, summed over labels."""
    values: Counter[str] = Counter()
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if match:
            values[match.group(1)] += float(match.group(2))
    return dict(values)


async def quiesce(client: httpx.AsyncClient, base: str, timeout: float) -> dict[str, float]:
    """Waits until nothing is active, queued or in flight (the scrape itself aside); the last metrics."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = metric_values((await client.get(base + "/metrics")).text)
        busy = (metrics.get("allama_sequences_active", 0) + metrics.get("allama_sequences_queued", 0)
                + metrics.get("allama_http_requests_in_flight", 0) - 1)
        if busy <= 0 or time.monotonic() >= deadline:
            return metrics
        await asyncio.sleep(0.2)


def mark(proc: subprocess.Popen, probe: Path, trim: bool = False, timeout: float = 120.0) -> dict:
    """Asks the server's probe for a memory report (then a malloc_trim, if `trim`) and returns it."""
    before = len(probe.read_text().splitlines()) if probe.exists() else 0
    proc.send_signal(signal.SIGUSR2 if trim else signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = probe.read_text().splitlines() if probe.exists() else []
        if len(lines) > before:
            return json.loads(lines[-1])
        time.sleep(0.1)
    raise RuntimeError("the server's memory probe did not answer")


async def wait_ready(proc: subprocess.Popen, base: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if (await client.get(base + "/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the server was not ready after {timeout:.0f} s:\n{log.read_text()[-2000:]}")


# --------------------------------------------------------------------------- report

def kind_table(outcomes: list[Outcome]) -> str:
    lines = ["| kind | requests | abandoned (before / mid-stream) | ok | 5xx | other errors | stuck "
             "| p50 ms | p99 ms |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind in [*KINDS, "all"]:
        rows = [o for o in outcomes if kind in ("all", o.kind)]
        if not rows:
            continue
        ok = [o for o in rows if not o.cancelled and o.error is None]
        lat = [o.latency for o in ok]
        before = sum(o.cancelled and o.cancel == "before" for o in rows)
        mid = sum(o.cancelled and o.cancel == "mid-stream" for o in rows)
        fivexx = sum(o.status is not None and o.status >= 500 and not o.cancelled for o in rows)
        errors = sum(o.error is not None for o in rows) - fivexx
        lines.append(f"| {kind} | {len(rows)} | {before + mid} ({before} / {mid}) | {len(ok)} | {fivexx} | {errors} "
                     f"| {sum(o.stuck for o in rows)} | {pct(lat, 50) * 1e3:.0f} | {pct(lat, 99) * 1e3:.0f} |")
    return "\n".join(lines)


def memory_report(first: dict, last: dict, main_requests: int) -> str:
    lines = ["| memory (server, idle, after gc.collect) | after warm-up | end | change |", "|---|---:|---:|---:|"]

    def row(name: str, a: float, b: float, unit: str = "") -> None:
        per = f" ({(b - a) / main_requests:+.0f}/req)" if main_requests and unit == "KiB" else ""
        lines.append(f"| {name} | {a:,.0f} {unit} | {b:,.0f} {unit} | {b - a:+,.0f} {unit}{per} |")

    row("VmRSS", first["rss_kb"], last["rss_kb"], "KiB")
    row("  of which anonymous (RssAnon)", first["rss_anon_kb"], last["rss_anon_kb"], "KiB")
    row("  of which file-backed (RssFile: the mmap'd model, libraries)", first["rss_file_kb"], last["rss_file_kb"],
        "KiB")
    if "rss_kb_after_trim" in last:
        row("VmRSS after malloc_trim(0) at the end", first["rss_kb"], last["rss_kb_after_trim"], "KiB")
    for key, name in (("in_use", "malloc in use"), ("free", "malloc free in arenas"), ("mmap", "malloc mmap'd")):
        if key in first.get("malloc", {}):
            row(name, first["malloc"][key] / 1024, last["malloc"][key] / 1024, "KiB")
    if "traced" in first:
        row("tracemalloc traced (Python heap)", first["traced"] / 1024, last["traced"] / 1024, "KiB")
        row("tracemalloc's own memory", first["tracemalloc_overhead"] / 1024, last["tracemalloc_overhead"] / 1024,
            "KiB")
    row("Python objects", first["objects"], last["objects"])
    row("threads", first["threads"], last["threads"])
    row("open files", first["fds"], last["fds"])
    grown = Counter(last["by_type"])
    grown.subtract(first["by_type"])
    top = [(name, n) for name, n in grown.most_common(12) if n > 0]
    if top:
        lines.append("\nPython objects by type, growth: " + ", ".join(f"{name} {n:+d}" for name, n in top))
    if "snapshot" in first and "snapshot" in last:
        old = tracemalloc.Snapshot.load(first["snapshot"])
        new = tracemalloc.Snapshot.load(last["snapshot"])
        skip = [tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
        old, new = old.filter_traces(skip), new.filter_traces(skip)
        lines.append("\ntracemalloc, largest growth by line:")
        for stat in new.compare_to(old, "lineno")[:15]:
            lines.append(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {stat.traceback[0]}")
        lines.append("\ntracemalloc, largest growth by traceback (top 3):")
        for stat in new.compare_to(old, "traceback")[:3]:
            lines.append(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
            lines += [f"      {frame}" for frame in stat.traceback.format()[-16:]]
    return "\n".join(lines)


def rss_slope(samples: list[tuple[int, int]]) -> float | None:
    """Least-squares KiB per request over the main phase's samples (None: too few)."""
    if len(samples) < 3:
        return None
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else None


# --------------------------------------------------------------------------- main

async def soak(args: argparse.Namespace, proc: subprocess.Popen, base: str, probe: Path, start: float) -> int:
    rng = random.Random(args.seed)
    deadline = start + args.seconds if args.seconds else float("inf")
    limits = httpx.Limits(max_connections=args.clients + 8, max_keepalive_connections=args.clients + 8)
    timeout = httpx.Timeout(args.stuck_after + 10, connect=10.0)

    async def phase(first: int, count: int, until: float, samples: list, done_before: int = 0) -> list[Outcome]:
        # a client per phase, closed before the memory reading: no idle keep-alive connections then
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            return await run_phase(client, base, rng, first, count, until, args, samples, done_before)

    async with httpx.AsyncClient(timeout=30.0) as control:
        await prime(control, base, args.n_parallel, args.n_ctx)
        warm = await phase(0, args.warmup, min(deadline, time.monotonic() + (deadline - time.monotonic()) / 2), [])
        await quiesce(control, base, 30.0)
        first = mark(proc, probe)
        print(f"warm-up: {len(warm)} requests; VmRSS {first['rss_kb']:,} KiB", file=sys.stderr)
        t0 = time.perf_counter()
        main: list[Outcome] = []
        samples: list[tuple[int, int]] = []
        checkpoints: list[tuple[int, dict]] = []
        left = args.requests - len(warm)
        for k in range(args.checkpoints, 0, -1):
            if time.monotonic() >= deadline or left <= 0:
                break
            part = await phase(len(warm) + len(main), -(-left // k), deadline, samples, len(main))
            main += part
            left -= len(part)
            metrics = await quiesce(control, base, 30.0)
            if k > 1:
                checkpoints.append((len(main), mark(proc, probe)))
                print(f"{len(main)} requests after the warm-up; VmRSS {checkpoints[-1][1]['rss_kb']:,} KiB",
                      file=sys.stderr)
        wall = time.perf_counter() - t0
        metrics = await quiesce(control, base, 30.0)
        last = mark(proc, probe, trim=args.malloc_trim)
        checkpoints.append((len(main), last))
    outcomes = warm + main
    leaked = {name.removeprefix("allama_"): metrics.get(name, 0) for name in
              ("allama_sequences_active", "allama_sequences_queued")}
    leaked["http_requests_in_flight"] = metrics.get("allama_http_requests_in_flight", 0) - 1
    cancelled = metrics.get("allama_requests_cancelled_total", 0)
    growth = 100.0 * (last["rss_kb"] - first["rss_kb"]) / first["rss_kb"]
    fivexx = sum(o.status is not None and o.status >= 500 and not o.cancelled for o in outcomes)
    errors = sum(o.error is not None for o in outcomes)
    stuck = sum(o.stuck for o in outcomes)
    abandoned = sum(o.cancelled for o in outcomes)

    print(f"\n{len(outcomes)} requests ({len(warm)} warm-up), {args.clients} clients, {abandoned} abandoned "
          f"({100 * abandoned / max(1, len(outcomes)):.0f}%), {wall:.0f} s after the warm-up "
          f"({len(main) / wall if wall else 0:.0f} req/s)\n")
    print(kind_table(outcomes))
    print()
    print(memory_report(first, last, len(main)))
    if len(checkpoints) > 1:
        print("\nVmRSS, idle, after the warm-up and at each checkpoint (KiB): " + ", ".join(
            [f"{first['rss_kb']:,}"] + [f"{n} req: {m['rss_kb']:,}" for n, m in checkpoints]))
    slope = rss_slope(samples)
    if slope is not None:
        print(f"\nVmRSS sampled under load every 2 s, least-squares slope over the run after the warm-up: "
              f"{slope * 1024:+.0f} bytes per request")
    checks = [
        ("unexpected 5xx", fivexx, "0", fivexx == 0),
        ("other errors (error events, 4xx, transport)", errors - fivexx, "0", errors == fivexx),
        (f"stuck > {args.stuck_after:.0f} s", stuck, "0", stuck == 0),
        ("sequences active / queued / HTTP in flight after",
         " / ".join(f"{v:.0f}" for v in leaked.values()), "0 / 0 / 0", not any(leaked.values())),
        ("VmRSS growth after warm-up", f"{growth:+.2f}%", f"< {args.max_rss_growth}%", growth < args.max_rss_growth),
        ("requests after warm-up", len(main), "> 0", len(main) > 0),
        ("cancellations the engine saw (of requests abandoned)", f"{cancelled:.0f} ({abandoned})", "> 0 if any",
         cancelled > 0 or abandoned == 0),
    ]
    print("\n| criterion | value | limit | |\n|---|---:|---:|---|")
    for name, value, limit, ok in checks:
        print(f"| {name} | {value} | {limit} | {'ok' if ok else 'FAIL'} |")
    for o in [o for o in outcomes if o.error][:10]:
        print(f"  {o.kind} ({o.cancel or 'not abandoned'}): {o.error}", file=sys.stderr)
    return 0 if all(ok for *_, ok in checks) else 1


def main(argv: list[str] | None = None) -> int:
    start = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests in all, warm-up included")
    parser.add_argument("--clients", type=int, default=32, help="requests kept in flight")
    parser.add_argument("--seconds", type=float, help="stop sending requests this long after the start")
    parser.add_argument("--warmup", type=int, default=1000, help="requests before the first memory reading")
    parser.add_argument("--cancel", type=float, default=0.2, help="fraction of requests abandoned")
    parser.add_argument("--stuck-after", type=float, default=60.0, help="seconds after which a request is stuck")
    parser.add_argument("--max-rss-growth", type=float, default=5.0, help="percent")
    parser.add_argument("--n-parallel", type=int, default=8)
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1,
                        help="decode threads (1: on 2 shared cores a spinning pool of 2 is ~9x slower)")
    parser.add_argument("--checkpoints", type=int, default=1,
                        help="split the run after the warm-up into this many parts, with a memory reading after each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="a GGUF model; default: the tiny random llama (built if missing)")
    parser.add_argument("--trace", type=int, default=0, metavar="FRAMES",
                        help="run the server under tracemalloc with this many frames (slow) and show what grew")
    parser.add_argument("--malloc-trim", action="store_true", help="at the end, also read VmRSS after malloc_trim(0)")
    parser.add_argument("--malloc-arena-max", type=int, help="MALLOC_ARENA_MAX for the server")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--log-dir", type=Path, help="keep the server's log and probe files here")
    args = parser.parse_args(argv)

    model = str(Path(args.model).resolve()) if args.model else str(default_model(True))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        log_dir = args.log_dir or Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        log, probe = log_dir / "server.log", log_dir / "probe.jsonl"
        probe.unlink(missing_ok=True)
        env = {**os.environ, "SOAK_PROBE_FILE": str(probe), "SKBUILD_EDITABLE_SKIP": "1"}
        if args.trace:
            env["SOAK_TRACEMALLOC"] = str(args.trace)
        if args.malloc_arena_max:
            env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
        env.update(item.split("=", 1) for item in args.server_env)
        argv_ = [sys.executable, str(Path(__file__).with_name("soak_server.py")), "--model", model,
                 "--n_parallel", str(args.n_parallel), "--n_ctx", str(args.n_ctx), "--n_threads", str(args.threads),
                 "--n_threads_batch", str(args.threads), "--host", "127.0.0.1", "--port", str(port)]
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, load "
              f"{os.getloadavg()[0]:.2f}; server: {' '.join(argv_[1:])}", file=sys.stderr)
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv_, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    cwd=ROOT)
        args.pid = proc.pid
        try:
            asyncio.run(wait_ready(proc, base, 120.0, log))
            status = asyncio.run(soak(args, proc, base, probe, start))
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.returncode not in (0, -signal.SIGTERM):
            print(f"the server exited with status {proc.returncode}:\n{log.read_text()[-2000:]}", file=sys.stderr)
            status = 1
    print(f"\ntook {time.monotonic() - start:.0f} s; load average now {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
