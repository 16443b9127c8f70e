"""Streaming chat through HAProxy: two `allama serve` replicas against one, on the same cores.

The balancer runs the shipped deploy/haproxy/allama.cfg (least connections; the requests carry
no X-Prompt-Cache-Key). The two set-ups share the cores fairly: one replica with 2 x T
threads, or two replicas with T threads each (--threads-per-replica T), each pinned to cores
of its own with taskset where the machine has 2 x T of them (the balancer and the client
are not pinned). For the single replica both of the config's server lines name it, so the
balancer does the same work in both runs.

At each level a closed loop keeps that many streaming chat requests in flight (as
benchmarks/http_serving.py, whose client this uses): tok/s is the completion tokens of all
replies over the level's wall time; TTFT and ITL are per reply.

    python benchmarks/replicas.py                       # the ~125M F16 benchmark model, 16 streams
    python benchmarks/replicas.py --model m.gguf --threads-per-replica 4 --levels 4,16,32
    python benchmarks/replicas.py --smoke               # seconds: tiny model, 4 streams
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from concurrency import default_model, pct  # beside this script: the same cached models and percentiles
from http_serving import Level, RunningServer, ServerSpec, Unavailable, add_load_arguments, free_port, run_levels
from throughput_plot import Series, plot_throughput

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_CONFIG = ROOT / "deploy" / "haproxy" / "allama.cfg"


@dataclass(frozen=True)
class Setup:
    """How many replicas, and the threads and cores of each."""

    replicas: int
    threads: int
    cores: tuple[tuple[int, ...], ...] | None  # each replica's cores, or None: not pinned

    @property
    def name(self) -> str:
        plural = lambda n: "s" if n > 1 else ""  # noqa: E731
        return f"{self.replicas} replica{plural(self.replicas)} x {self.threads} thread{plural(self.threads)}"


def setups(threads_per_replica: int, pin: bool) -> list[Setup]:
    """One replica with 2T threads, then two with T each; pinned where there are 2T cores."""
    t = threads_per_replica
    pinned = pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2 * t
    return [Setup(1, 2 * t, (tuple(range(2 * t)),) if pinned else None),
            Setup(2, t, (tuple(range(t)), tuple(range(t, 2 * t))) if pinned else None)]


def replica_spec(index: int, setup: Setup, model: str, args: argparse.Namespace) -> ServerSpec:
    threads = str(setup.threads)
    taskset = ["taskset", "-c", ",".join(map(str, setup.cores[index]))] if setup.cores else []
    return ServerSpec(
        f"replica{index + 1}",
        lambda port: [*taskset, sys.executable, "-m", "allama.server", "--model", model,
                      "--n_ctx", str(args.slot_ctx), "--n_parallel", str(args.n_parallel),
                      "--kv_size", str(args.slot_ctx * args.n_parallel),
                      "--n_threads", threads, "--n_threads_batch", threads,
                      "--host", "127.0.0.1", "--port", str(port)],
        "/health")


def balancer_spec(replica_urls: list[str]) -> ServerSpec:
    """HAProxy with the shipped config; its two server lines name the replicas (one twice)."""
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    addresses = [url.removeprefix("http://") for url in (replica_urls * 2)[:2]]
    spec = ServerSpec(
        "haproxy",
        lambda port: ["env", f"ALLAMA_LISTEN=127.0.0.1:{port}", f"ALLAMA_STATS=127.0.0.1:{free_port()}",
                      f"ALLAMA_REPLICA_1={addresses[0]}", f"ALLAMA_REPLICA_2={addresses[1]}",
                      str(haproxy), "-db", "-f", str(HAPROXY_CONFIG)],
        "/health")
    if haproxy is None:
        spec.missing = "haproxy is not installed (Debian: apt-get install haproxy)"
    return spec


async def bench_setup(setup: Setup, model: str, levels: list[int], args: argparse.Namespace,
                      log_dir: Path) -> list[Level]:
    async with contextlib.AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(  # one at a time: loading is CPU-bound
            RunningServer(replica_spec(i, setup, model, args), log_dir, args.start_timeout))
            for i in range(setup.replicas)]
        balancer = await stack.enter_async_context(
            RunningServer(balancer_spec([r.base_url for r in replicas]), log_dir, args.start_timeout))
        # two warm-up streams at once: the balancer sends one to each replica
        return await run_levels(balancer.base_url + "/v1/chat/completions", setup.name, Path(model).stem, levels,
                                args, warm_streams=2)


def table(runs: dict[Setup, list[Level]]) -> str:
    lines = ["| replicas | threads each | cores pinned | streams | requests | failed | tok/s "
             "| TTFT p50 / p95 ms | ITL p50 / p95 ms |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for setup, levels in runs.items():
        pinned = " / ".join(",".join(map(str, c)) for c in setup.cores) if setup.cores else "no"
        for r in levels:
            ttft, itl = [x.ttft for x in r.ok], [g for x in r.ok for g in x.gaps]
            lines.append(f"| {setup.replicas} | {setup.threads} | {pinned} | {r.concurrency} | {len(r.replies)} "
                         f"| {r.failures} | {r.tokens_per_s:.1f} | {pct(ttft, 50) * 1e3:.0f} / {pct(ttft, 95) * 1e3:.0f} "
                         f"| {pct(itl, 50) * 1e3:.1f} / {pct(itl, 95) * 1e3:.1f} |")
    return "\n".join(lines)


def ratios(runs: dict[Setup, list[Level]]) -> str:
    one, two = (runs.get(s) for s in sorted(runs, key=lambda s: s.replicas))
    if not one or not two:
        return ""
    lines = ["| streams | 2 replicas / 1 replica tok/s |", "|---:|---:|"]
    for a, b in zip(one, two):
        lines.append(f"| {a.concurrency} | {b.tokens_per_s / a.tokens_per_s:.2f}x |" if a.tokens_per_s
                     else f"| {a.concurrency} | n/a |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a GGUF model; default: the ~125M F16 benchmark model (built if missing)")
    parser.add_argument("--threads-per-replica", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="threads of each of the two replicas; the single replica gets twice as many")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin replicas to cores")
    parser.add_argument("--levels", default="16", help="concurrent streams, comma-separated")
    parser.add_argument("--n-parallel", type=int, default=16, help="slots per replica")
    parser.add_argument("--slot-ctx", type=int, default=256, help="context of one request (prompt + reply)")
    add_load_arguments(parser)
    parser.add_argument("--plot", type=Path, help="write tok/s against streams here (PNG)")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 1 thread per replica, 4 streams, 8 tokens")
    args = parser.parse_args(argv)
    if args.smoke:
        args.levels, args.max_tokens, args.n_parallel, args.slot_ctx = "4", 8, 4, 128
        args.threads_per_replica, args.start_timeout, args.timeout, args.plot = 1, 60.0, 30.0, None
    levels = [int(x) for x in args.levels.split(",")]
    model = str(Path(args.model).resolve()) if args.model else str(default_model(args.smoke))
    print(f"model {model}; {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; "
          f"{args.n_parallel} slots of {args.slot_ctx} tokens per replica; max_tokens {args.max_tokens}",
          file=sys.stderr)

    runs: dict[Setup, list[Level]] = {}
    with tempfile.TemporaryDirectory(prefix="replicas-") as tmp:
        log_dir = args.log_dir or Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        for setup in setups(args.threads_per_replica, args.pin):
            try:
                runs[setup] = asyncio.run(bench_setup(setup, model, levels, args, log_dir))
            except Unavailable as exc:
                print(f"{setup.name}: unavailable: {exc}", file=sys.stderr)
                return 1
    print(table(runs))
    print("\n" + ratios(runs))
    if args.plot:
        series: Series = {s.name: ([r.concurrency for r in levels], [r.tokens_per_s for r in levels], style)
                          for (s, levels), style in zip(runs.items(), ("o-", "s-"))}
        plot_throughput(series, args.plot, "concurrent streaming requests", "completion tokens/s (aggregate)")
    return 1 if any(r.failures for levels in runs.values() for r in levels) else 0


if __name__ == "__main__":
    raise SystemExit(main())
