"""`allama bench`: generation throughput at several numbers of concurrent streams.

At each level N, N streamed completions of --max-tokens tokens run at once (end-of-sequence
ignored, so every one is as long) after a warm-up request; the table gives the aggregate
tokens/s, each stream's tokens/s, and the medians of time to first token (TTFT) and of the
gap between tokens (ITL). Locally the model is loaded with n_parallel = the largest level;
--url measures a running OpenAI-compatible server (allama serve, llama-server, vLLM, ...)
instead, over its streaming /v1/completions."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allama.cli.model_options import add_model_options, load_model
from allama.cli.progress import Progress

EXAMPLES = """\
examples:
  allama bench                                          # the demo model, 1, 4, 8 and 16 streams
  allama bench -m model.gguf --streams 1,2,4,8,16,32 --max-tokens 256 --plot throughput.png
  allama bench --url http://127.0.0.1:8000 --streams 1,8,32     # a running server
  allama bench --url http://gpu-box:8000/v1 --model my-alias --api-key KEY
"""

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


@dataclass
class StreamTiming:
    start: float
    token_times: list[float]  # when each piece of text arrived
    tokens: int  # completion tokens (the usage chunk's count, else the pieces)


@dataclass
class Level:
    streams: int
    tokens: int
    seconds: float
    ttft_ms: float
    itl_ms: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="throughput at several numbers of concurrent streams, local or over HTTP",
                            description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser)
    parser.add_argument("--streams", type=_levels, default=[1, 4, 8, 16], metavar="N,N,...",
                        help="numbers of concurrent streams to measure (default 1,4,8,16)")
    parser.add_argument("-n", "--max-tokens", type=int, default=128, metavar="N",
                        help="tokens each stream generates (default %(default)s)")
    parser.add_argument("--prompt", default=PROMPT, help="the prompt every stream continues")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw tokens/s and TTFT against streams (matplotlib)")
    parser.add_argument("--url", help="measure the OpenAI-compatible server at URL instead (then --model names "
                                      "the served model; default: the first in /v1/models)")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"),
                        help="bearer token for --url (default: $OPENAI_API_KEY)")
    parser.set_defaults(run=run)


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, not {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("each number of streams must be at least 1")
    return levels


def run(args: argparse.Namespace) -> int:
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("allama bench: --plot needs matplotlib, which is not installed (pip install matplotlib)",
                  file=sys.stderr)
            return 2
    if args.url and args.hf:
        print("allama bench: --hf loads a model here; with --url, --model names the served one", file=sys.stderr)
        return 2
    if args.url:
        levels = asyncio.run(bench_server(args))
        source = args.url
    else:
        slots = max(args.streams)
        per_stream = len(args.prompt.encode("utf-8")) + args.max_tokens + 16
        llm = load_model(args, asynchronous=True, n_parallel=slots,
                         n_ctx=max(args.n_ctx, per_stream), kv_size=max(args.n_ctx, per_stream * slots))
        levels = asyncio.run(bench_local(llm, args))
        source = os.path.basename(llm.model_path)
    print(table(levels, source, args.max_tokens))
    if args.plot:
        plot(levels, Path(args.plot), source)
    return 0


async def bench_local(llm: Any, args: argparse.Namespace) -> list[Level]:
    async def one() -> StreamTiming:
        start = time.perf_counter()
        stream = await llm.create_completion(args.prompt, max_tokens=args.max_tokens, temperature=0.0,
                                             ignore_eos=True, stream=True, stream_options={"include_usage": True})
        return await _timed(_chunks(stream), start)

    try:
        return await _levels_of(one, args)
    finally:
        await llm.aclose()


async def bench_server(args: argparse.Namespace) -> list[Level]:
    import httpx

    base = args.url.rstrip("/")
    base = base[:-3] if base.endswith("/v1") else base
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=max(args.streams) + 4)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600, limits=limits) as client:
        model = args.model
        if model is None:
            listing = await client.get("/v1/models")
            listing.raise_for_status()
            model = listing.json()["data"][0]["id"]
        body = {"model": model, "prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 0.0,
                "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}

        async def one() -> StreamTiming:
            start = time.perf_counter()
            async with client.stream("POST", "/v1/completions", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise ValueError(f"{base}/v1/completions answered {response.status_code}: {response.text[:300]}")
                return await _timed(_events(response), start)

        return await _levels_of(one, args)


async def _chunks(stream: Any) -> Any:
    async with stream:
        async for chunk in stream:
            yield chunk


async def _events(response: Any) -> Any:
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data == "[DONE]":
                return
            yield json.loads(data)


async def _timed(chunks: Any, start: float) -> StreamTiming:
    times: list[float] = []
    usage = None
    async for chunk in chunks:
        if chunk.get("usage"):
            usage = chunk["usage"].get("completion_tokens")
        if chunk.get("choices") and chunk["choices"][0].get("text"):
            times.append(time.perf_counter())
    return StreamTiming(start, times, usage if usage is not None else len(times))


async def _levels_of(one: Any, args: argparse.Namespace) -> list[Level]:
    await one()  # warm-up: first-call costs out of the numbers
    levels = []
    with Progress(sum(args.streams), "bench", "streams") as bar:
        for n in args.streams:
            async def counted() -> StreamTiming:
                timing = await one()
                bar.update(1)
                return timing

            start = time.perf_counter()
            timings = await asyncio.gather(*(counted() for _ in range(n)))
            levels.append(summarise(n, timings, time.perf_counter() - start))
    return levels


def summarise(streams: int, timings: list[StreamTiming], seconds: float) -> Level:
    ttfts = [(t.token_times[0] - t.start) * 1000 for t in timings if t.token_times]
    gaps = [(b - a) * 1000 for t in timings for a, b in zip(t.token_times, t.token_times[1:])]
    return Level(streams, sum(t.tokens for t in timings), seconds,
                 statistics.median(ttfts) if ttfts else float("nan"),
                 statistics.median(gaps) if gaps else float("nan"))


def table(levels: list[Level], source: str, max_tokens: int) -> str:
    lines = [f"{source}, {max_tokens} tokens per stream", "",
             "| streams | tokens | seconds | tok/s (all) | tok/s (per stream) | TTFT p50 (ms) | ITL p50 (ms) |",
             "|--------:|-------:|--------:|------------:|-------------------:|--------------:|-------------:|"]
    for level in levels:
        lines.append(f"| {level.streams} | {level.tokens} | {level.seconds:.2f} | {level.tokens_per_second:.1f} "
                     f"| {level.tokens_per_second / level.streams:.1f} | {level.ttft_ms:.1f} | {level.itl_ms:.1f} |")
    return "\n".join(lines)


def plot(levels: list[Level], path: Path, source: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    streams = [level.streams for level in levels]
    fig, (throughput, ttft) = plt.subplots(1, 2, figsize=(10, 4))
    throughput.plot(streams, [level.tokens_per_second for level in levels], "o-")
    throughput.set_ylabel("tokens/s (all streams)")
    ttft.plot(streams, [level.ttft_ms for level in levels], "o-", color="tab:orange")
    ttft.set_ylabel("time to first token, p50 (ms)")
    for ax in (throughput, ttft):
        if len(set(streams)) > 1:
            ax.set_xscale("log", base=2)
        ax.set_xticks(streams, [str(s) for s in streams])
        ax.set_xlabel("concurrent streams")
        ax.grid(True, alpha=0.3)
    fig.suptitle(source)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"allama: plot written to {path}", file=sys.stderr)
