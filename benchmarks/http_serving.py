"""Streaming chat over HTTP: allama's server vs llama-cpp-python's vs llama.cpp's llama-server.

Each server is started in turn on the same model (a subprocess on a free local port),
waited for, warmed up with one request, benchmarked and stopped. At each concurrency
level a closed loop keeps that many streaming chat requests in flight until
max(--min-requests, --rounds x level) have completed, and the client measures:

  tok/s   aggregate: completion tokens of all replies / wall time of the level
  TTFT    time from sending a request to its first content chunk
  ITL     gaps between consecutive content chunks of a reply

Every request is the same kind: one short user message, distinct per request (so no
reply reuses another's prompt beyond the chat template's own prefix), max_tokens 64,
temperature 0, stream=true with stream_options.include_usage, ignore_eos true. Tokens
are the usage's completion_tokens where a server sends it, else the number of content
chunks (llama-cpp-python: it sends no usage in streams and has no ignore_eos).

    bash benchmarks/build_peers.sh                       # llama-server + llama-cpp-python
    python benchmarks/http_serving.py --plot docs/benchmarks-http-serving.png
    python benchmarks/http_serving.py --smoke            # seconds: tiny model, allama only
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib.util
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from concurrency import default_model, pct  # beside this script: the same cached models and percentiles
from throughput_plot import Series, plot_throughput

ROOT = Path(__file__).resolve().parents[1]
PEERS_BIN = ROOT / "build" / "peers" / "bin"
SERVERS = ("allama", "llama-cpp-python", "llama-server")
LLAMA_2_JINJA = ('{{ bos_token }}{% for m in messages %}{% if m["role"] == "user" %}[INST] {{ m["content"] }} [/INST]'
                 '{% elif m["role"] == "assistant" %}{{ m["content"] }}{{ eos_token }}{% endif %}{% endfor %}')
TOPICS = ("rivers", "mountains", "old clocks", "the moon", "bread", "violins", "glaciers", "bees",
          "lighthouses", "chess", "deserts", "trains", "coral reefs", "paper maps", "thunder", "owls")


@dataclass
class Reply:
    """One streamed chat completion as the client saw it."""

    ttft: float = 0.0
    gaps: list[float] = field(default_factory=list)
    chunks: int = 0  # content chunks received
    usage_tokens: int | None = None  # completion_tokens of the final usage chunk, if sent
    prompt_tokens: int | None = None  # the chat-templated prompt's length, from the same usage
    error: str | None = None

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else self.chunks


@dataclass
class Level:
    """All replies of one concurrency level on one server."""

    server: str
    concurrency: int
    wall: float
    replies: list[Reply]

    @property
    def ok(self) -> list[Reply]:
        return [r for r in self.replies if r.error is None]

    @property
    def failures(self) -> int:
        return len(self.replies) - len(self.ok)

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.ok)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall if self.wall else 0.0

    @property
    def counted_by(self) -> str:
        kinds = {"usage" if r.usage_tokens is not None else "chunks" for r in self.ok}
        return "/".join(sorted(kinds)) or "-"


@dataclass
class ServerSpec:
    """How to start one server and tell when it is ready."""

    name: str
    argv: Callable[[int], list[str]]  # the command line, given the port
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    missing: str | None = None  # why it cannot run here, if it cannot


class Unavailable(Exception):
    """The server could not be started (not installed or built, exited, never ready)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- servers

def importable(module: str) -> bool:
    """Whether `module` is installed, without importing it (llama_cpp would load its library)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def server_specs(model: str, args: argparse.Namespace) -> dict[str, ServerSpec]:
    """The three servers with the same model, threads and per-request context."""
    threads = str(args.threads)
    slot_ctx, n = args.slot_ctx, args.n_parallel
    fa = ["--flash_attn", "true"] if args.flash_attn else []

    # allama's n_ctx is one request's window; --kv_size gives its unified KV cache a window per
    # slot, the cells llama-server's --ctx-size gets (by default the cache holds one window,
    # as llama-cpp-python's does, and the slots would take turns)
    allama = ServerSpec(
        "allama",
        lambda port: [sys.executable, "-m", "allama.server", "--model", model, "--n_ctx", str(slot_ctx),
                      "--kv_size", str(slot_ctx * n),
                      "--n_parallel", str(n), "--n_threads", threads, "--n_threads_batch", threads,
                      *fa, "--host", "127.0.0.1", "--port", str(port)],
        "/health")
    if not importable("allama.server"):
        allama.missing = "allama.server cannot be imported (not written yet?)"

    # one request at a time, so its context is one request's; it has no /health.
    # --interrupt_requests false: by default a new request cuts the stream being served
    # short (it ends with [DONE]), which would leave every concurrent reply truncated
    lib_path = os.environ.get("LLAMA_CPP_LIB_PATH", str(PEERS_BIN))
    lcp = ServerSpec(
        "llama-cpp-python",
        lambda port: [sys.executable, "-m", "llama_cpp.server", "--model", model, "--n_ctx", str(slot_ctx),
                      "--n_threads", threads, "--n_threads_batch", threads,
                      "--flash_attn", "true" if args.flash_attn else "false", "--interrupt_requests", "false",
                      "--host", "127.0.0.1", "--port", str(port)],
        "/v1/models", env={"LLAMA_CPP_LIB_PATH": lib_path})
    if not importable("llama_cpp"):
        lcp.missing = "llama-cpp-python is not installed: run benchmarks/build_peers.sh"
    elif not Path(lib_path, "libllama.so").exists():
        lcp.missing = f"no libllama.so in {lib_path}: run benchmarks/build_peers.sh"

    # --ctx-size is the total: without a unified KV cache (the default when --parallel is
    # given) each of the n slots gets ctx / n. Flash attention defaults to auto (on, on
    # CPU): set explicitly so that all three servers match. A model without a chat
    # template gets llama-2's from allama and llama-cpp-python but chatml from
    # llama-server: give it llama-2's too (as Jinja, its default pipeline; a built-in
    # name such as llama2 is only looked up with --no-jinja), so that all three
    # evaluate prompts of about the same length
    exe = PEERS_BIN / "llama-server"
    server = ServerSpec(
        "llama-server",
        lambda port: [str(exe), "-m", model, "-c", str(slot_ctx * n), "--parallel", str(n), "-t", threads,
                      "-tb", threads, "-fa", "on" if args.flash_attn else "off",
                      *([] if has_chat_template(model) else ["--chat-template", LLAMA_2_JINJA]),
                      *shlex.split(args.llama_server_args), "--host", "127.0.0.1", "--port", str(port)],
        "/health")
    if not exe.exists():
        server.missing = f"{exe.relative_to(ROOT)} is not built: run benchmarks/build_peers.sh"
    return {"allama": allama, "llama-cpp-python": lcp, "llama-server": server}


def has_chat_template(model: str) -> bool:
    from allama import _native

    params = _native.ModelParams()
    params.vocab_only = True
    loaded = _native.Model.load(model, params)
    try:
        return loaded.chat_template() is not None
    finally:
        loaded.close()


def _die_with_parent() -> None:
    """In the child: SIGTERM it when this process dies, even by SIGKILL (Linux only)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class RunningServer:
    """A server subprocess, ready to serve inside the `async with`, always stopped after it."""

    def __init__(self, spec: ServerSpec, log_dir: Path, start_timeout: float) -> None:
        self.spec = spec
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{spec.name}.log"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> RunningServer:
        if self.spec.missing:
            raise Unavailable(self.spec.missing)
        argv = self.spec.argv(self.port)
        print(f"{self.spec.name}: {shlex.join(argv)}", file=sys.stderr)  # for docs/benchmarks.md
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **self.spec.env}, cwd=ROOT, preexec_fn=_die_with_parent)
        try:
            await self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise Unavailable(f"exited with status {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if (await client.get(self.base_url + self.spec.ready_path)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)
        raise Unavailable(f"not ready after {self.start_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


# --------------------------------------------------------------------------- client

def chat_body(model_name: str, number: int, max_tokens: int) -> dict:
    topic = TOPICS[number % len(TOPICS)]
    return {
        "model": model_name,
        "messages": [{"role": "user", "content": f"Request {number}: write a few sentences about {topic}."}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,  # llama-cpp-python ignores the unknown field
    }


async def stream_chat(client: httpx.AsyncClient, url: str, body: dict) -> Reply:
    """Sends one streaming chat request; times its content chunks as they arrive."""
    reply = Reply()
    stamps: list[float] = []
    start = time.perf_counter()
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                reply.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return reply
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments (": ping"), event: lines
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    reply.error = f"error event: {str(chunk['error'])[:200]}"
                    return reply
                if usage := chunk.get("usage"):
                    reply.usage_tokens = int(usage["completion_tokens"])
                    reply.prompt_tokens = usage.get("prompt_tokens")
                if any((c.get("delta") or {}).get("content") or (c.get("delta") or {}).get("reasoning_content")
                       for c in chunk.get("choices") or ()):
                    stamps.append(time.perf_counter())
    except (httpx.HTTPError, json.JSONDecodeError, KeyError, ValueError) as exc:
        reply.error = f"{type(exc).__name__}: {exc}"
        return reply
    if not stamps:
        reply.error = "no content"
        return reply
    reply.ttft = stamps[0] - start
    reply.gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    reply.chunks = len(stamps)
    return reply


async def run_level(client: httpx.AsyncClient, url: str, name: str, concurrency: int, bodies: list[dict],
                    timeout: float) -> Level:
    """Keeps `concurrency` requests in flight until all `bodies` are answered."""
    pending = list(reversed(bodies))
    replies: list[Reply] = []

    async def worker() -> None:
        while pending:
            body = pending.pop()
            try:
                replies.append(await asyncio.wait_for(stream_chat(client, url, body), timeout))
            except asyncio.TimeoutError:
                replies.append(Reply(error=f"no reply within {timeout:.0f} s"))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Level(name, concurrency, time.perf_counter() - t0, replies)


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that run_levels and RunningServer read."""
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="requests per level: rounds x level ...")
    parser.add_argument("--min-requests", type=int, default=4, help="... but at least this many")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds a server may take to be ready")
    parser.add_argument("--log-dir", type=Path, help="keep the servers' logs here (default: a temporary folder)")


async def run_levels(url: str, name: str, model_name: str, levels: list[int], args: argparse.Namespace,
                     warm_streams: int = 1) -> list[Level]:
    """Warms the server at `url` up with `warm_streams` short requests at once, then runs each
    level (a closed loop of that many streams) in turn."""
    limits = httpx.Limits(max_connections=max(levels) + 4, max_keepalive_connections=max(levels) + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.timeout, connect=10.0), limits=limits) as client:
        warm = await run_level(client, url, name, warm_streams,
                               [chat_body(model_name, n, 8) for n in range(warm_streams)], args.timeout)
        if warm.failures:
            raise Unavailable(f"warm-up request failed: {next(r.error for r in warm.replies if r.error)}")
        runs, number = [], warm_streams
        for level in levels:
            n = max(args.min_requests, args.rounds * level)
            bodies = [chat_body(model_name, number + i, args.max_tokens) for i in range(n)]
            number += n
            runs.append(await run_level(client, url, name, level, bodies, args.timeout))
            r = runs[-1]
            print(f"{name}: {level} streams, {len(bodies)} requests, {r.tokens_per_s:.1f} tok/s, "
                  f"{r.failures} failed", file=sys.stderr)
    return runs


async def bench_server(spec: ServerSpec, model_name: str, levels: list[int], args: argparse.Namespace,
                       log_dir: Path) -> list[Level]:
    async with RunningServer(spec, log_dir, args.start_timeout) as server:
        try:
            return await run_levels(server.base_url + "/v1/chat/completions", spec.name, model_name, levels, args)
        except Unavailable as exc:
            raise Unavailable(f"{exc}\n{server.log_tail()}") from None


# --------------------------------------------------------------------------- report

def table(runs: dict[str, list[Level]]) -> str:
    lines = ["| server | streams | requests | failed | tokens (per reply) | counted by | prompt tokens | tok/s "
             "| TTFT p50 / p95 ms | ITL p50 / p95 ms |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for name, levels in runs.items():
        for r in levels:
            per_reply = span(x.tokens for x in r.ok)
            prompt = span(x.prompt_tokens for x in r.ok if x.prompt_tokens is not None)
            ttft = [x.ttft for x in r.ok]
            itl = [g for x in r.ok for g in x.gaps]
            lines.append(
                f"| {name} | {r.concurrency} | {len(r.replies)} | {r.failures} | {r.tokens} ({per_reply}) "
                f"| {r.counted_by} | {prompt} | {r.tokens_per_s:.1f} "
                f"| {pct(ttft, 50) * 1e3:.0f} / {pct(ttft, 95) * 1e3:.0f} "
                f"| {pct(itl, 50) * 1e3:.1f} / {pct(itl, 95) * 1e3:.1f} |")
    return "\n".join(lines)


def span(values: Iterable[int]) -> str:
    """'64', '58-64', or '-' for none."""
    v = sorted(set(values))
    return "-" if not v else str(v[0]) if len(v) == 1 else f"{v[0]}-{v[-1]}"


def ratios(runs: dict[str, list[Level]]) -> str:
    ours = {r.concurrency: r for r in runs.get("allama", [])}
    peers = [p for p in ("llama-cpp-python", "llama-server") if runs.get(p)]
    if not ours or not peers:
        return ""
    by = {p: {r.concurrency: r for r in runs[p]} for p in peers}
    lines = ["| streams | " + " | ".join(f"allama / {p} tok/s" for p in peers) + " |",
             "|---:|" + "---:|" * len(peers)]
    for level, r in ours.items():
        cells = []
        for p in peers:
            other = by[p].get(level)
            cells.append(f"{r.tokens_per_s / other.tokens_per_s:.2f}x" if other and other.tokens_per_s else "n/a")
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: dict[str, list[Level]], path: Path) -> None:
    series: Series = {name: ([r.concurrency for r in levels], [r.tokens_per_s for r in levels], style)
                      for (name, levels), style in zip(runs.items(), ("o-", "s-", "^-"))}
    plot_throughput(series, path, "concurrent streaming requests", "completion tokens/s (aggregate)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a GGUF model; default: the ~125M F16 benchmark model (built if missing)")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--levels", default="1,8,32", help="concurrent requests, comma-separated")
    parser.add_argument("--n-parallel", type=int, default=8, help="slots (sequences decoded together) per server")
    parser.add_argument("--slot-ctx", type=int, default=256, help="context of one request (prompt + reply)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--flash-attn", action="store_true", help="flash attention on, for all servers")
    parser.add_argument("--llama-server-args", default="", help="extra llama-server flags, e.g. --llama-server-args=-kvu")
    add_load_arguments(parser)
    parser.add_argument("--plot", type=Path, help="write the plot here (PNG)")
    parser.add_argument("--smoke", action="store_true", help="tiny model, allama only, 1 and 2 streams, 8 tokens")
    args = parser.parse_args(argv)
    if args.smoke:
        args.servers, args.levels, args.max_tokens, args.n_parallel = "allama", "1,2", 8, 2
        args.slot_ctx, args.start_timeout, args.timeout, args.plot = 128, 60.0, 30.0, None
    levels = [int(x) for x in args.levels.split(",")]
    names = [s for s in args.servers.split(",") if s]
    unknown = set(names) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; known: {', '.join(SERVERS)}")
    model = str(Path(args.model).resolve()) if args.model else str(default_model(args.smoke))
    print(f"model {model}; {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, {args.threads} "
          f"threads; {args.n_parallel} slots of {args.slot_ctx} tokens; max_tokens {args.max_tokens}; "
          f"flash attention {'on' if args.flash_attn else 'off'}", file=sys.stderr)

    specs = server_specs(model, args)
    runs: dict[str, list[Level]] = {}
    unavailable: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="http-serving-") as tmp:
        log_dir = args.log_dir or Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            try:
                runs[name] = asyncio.run(bench_server(specs[name], Path(model).stem, levels, args, log_dir))
            except Unavailable as exc:
                unavailable[name] = str(exc)
                print(f"{name}: unavailable: {exc}", file=sys.stderr)
    if runs:
        print(table(runs))
        if text := ratios(runs):
            print("\n" + text)
    for name, reason in unavailable.items():
        print(f"\n{name}: unavailable: {reason.splitlines()[0]}")
    if "llama-cpp-python" in runs:
        print("\nllama-cpp-python sends no usage in streams: its tokens are its content chunks (one per "
              "token, except where it holds back an incomplete UTF-8 character), and it has no ignore_eos: "
              "a reply may end before max_tokens (see tokens per reply).")
    if args.plot and runs:
        plot(runs, args.plot)
    if not runs:
        return 1
    return 1 if args.smoke and any(r.failures for levels in runs.values() for r in levels) else 0


if __name__ == "__main__":
    raise SystemExit(main())
