"""Where a decode step's time goes: each part of the engine's step on the decode thread, timed.

Wraps the scheduler's step parts (batch building, the decode, sampling and turning tokens into
outputs, posting them to the event loop, the inbox and admission) with timers, then generates
with N concurrent requests, read as streams or awaited whole, and prints microseconds per step
for each part. Posting is split into its queueing and the wake-up of the event loop's thread
(asyncio's self-pipe write), which is what a streamed step pays and a whole result does not.

The wrappers add about a microsecond each; compare parts with each other and modes with each
other, not the step with other benchmarks (engine_share.py and overhead.py do that).

    python benchmarks/step_parts.py --levels 1,8
    python benchmarks/step_parts.py --smoke           # seconds: CI smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preset_models import preset_model  # noqa: E402 - beside this script

PARTS = (
    ("batch", "allama.engine.batch_builder", "BatchBuilder", "build"),
    ("after the decode", "allama.engine.scheduler", "Scheduler", "_advance"),
    ("sampling and outputs", "allama.engine.scheduler", "Scheduler", "_sample"),
    ("posting", "allama.engine.request_table", "RequestTable", "flush"),
    ("inbox", "allama.engine.inbox", "Inbox", "take"),
    ("admission", "allama.engine.request_table", "RequestTable", "admit"),
    ("counters", "allama.engine.scheduler", "Scheduler", "_count_llama_tokens"),
)


class PartTimer:
    """Seconds spent in each wrapped method, summed over calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, name: str, part: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)
        seconds = self.seconds

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[part] += time.perf_counter() - t0

        setattr(owner, name, timed)

    def install(self) -> None:
        import importlib

        for part, module, cls, method in PARTS:
            self.wrap(getattr(importlib.import_module(module), cls), method, part)
        from allama.engine.loop_handle import LoopHandle

        seconds = self.seconds

        def post(handle: LoopHandle, callback: Callable[..., Any], *args: Any) -> None:
            loop = handle.key
            if not isinstance(loop, asyncio.BaseEventLoop):
                raise RuntimeError("step_parts.py measures asyncio's loop only")
            t0 = time.perf_counter()
            loop._call_soon(callback, args, None)  # what call_soon_threadsafe does, in two timed parts
            t1 = time.perf_counter()
            loop._write_to_self()
            t2 = time.perf_counter()
            seconds["posting: queueing"] += t1 - t0
            seconds["posting: wake-up"] += t2 - t1

        LoopHandle.post = post  # type: ignore[method-assign]


async def measure(llm: Any, n: int, whole: bool, args: argparse.Namespace, timer: PartTimer) -> dict[str, float]:
    async def one(seed: int) -> None:
        options = dict(max_tokens=args.max_tokens, temperature=args.temperature, ignore_eos=True, seed=seed)
        if whole:
            await llm.create_completion(args.prompt, **options)
            return
        async for _chunk in await llm.create_completion(args.prompt, stream=True, **options):
            pass

    await asyncio.gather(*(one(i) for i in range(n)))  # warm
    timer.seconds.clear()
    before = llm.stats()
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    seconds = time.perf_counter() - t0
    after = llm.stats()
    steps = after.decode_calls - before.decode_calls
    per_step = {part: s / steps * 1e6 for part, s in timer.seconds.items()}
    per_step["step"] = (after.step_seconds - before.step_seconds) / steps * 1e6
    per_step["decode"] = (after.decode_seconds - before.decode_seconds) / steps * 1e6
    per_step["native sampling"] = (after.sample_seconds - before.sample_seconds) / steps * 1e6
    per_step["tokens/s"] = n * args.max_tokens / seconds
    return per_step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a GGUF model; default: the tiny overhead model (built if missing)")
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--max-tokens", type=int, default=1000)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    args = parser.parse_args(argv)
    if args.smoke:
        args.levels, args.max_tokens = "1,2", 8
    args.model = args.model or preset_model("overhead")
    args.prompt = list(range(100, 116))
    timer = PartTimer()
    timer.install()
    from allama import Llama

    columns = ["tokens/s", "step", "decode", "native sampling", *(p[0] for p in PARTS), "posting: queueing",
               "posting: wake-up"]
    print("Microseconds per step on the decode thread ('sampling and outputs' holds native sampling; "
          "'posting' holds its two parts).\n")
    print("| streams, mode | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for n in (int(x) for x in args.levels.split(",")):
        llm = Llama(str(args.model), n_ctx=args.max_tokens + 64, n_parallel=n, n_threads=args.threads,
                    n_threads_batch=args.threads, flash_attn=False, n_keep=0, verbose=False, kv_unified=False)
        try:
            for whole in (False, True):
                row = asyncio.run(measure(llm, n, whole, args, timer))
                cells = [f"{row.get(c, 0.0):,.0f}" if c in ("tokens/s", "step", "decode") else f"{row.get(c, 0.0):.1f}"
                         for c in columns]
                print(f"| {n}, {'whole' if whole else 'stream'} | " + " | ".join(cells) + " |", flush=True)
        finally:
            llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
