"""What sampling one row of logits costs: allama's sampler chains against llama.cpp's own, on a
hot row and on the rows a decode has just written.

  hot row          one chain samples the same row again and again (`SamplerChain.sample_logits`):
                   the row sits in the core's cache, so this is the chain's own compute
  after a decode   `sample_batch` over the N rows of a decode of N sequences, timed right after
                   the decode (the engine's case: the rows come from wherever the decode left them)
  again            the same call once more, on the same rows (what reading them cost the first
                   time, beyond the chain's compute, is the difference)

Chains: llama-cpp-python's default (top-k 40, top-p 0.95, min-p 0.05, temperature 0.8), which
allama runs with its own top-k selection; the same chain behind a no-op logit bias, so that
llama.cpp's samplers see the whole vocabulary (what the chain would cost without that
selection); and greedy.

    python benchmarks/sampling.py --rows 1,8,64
    python benchmarks/sampling.py --smoke          # seconds: CI smoke test
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preset_models import preset_model  # noqa: E402 - beside this script

CHAINS = ("default", "default, llama.cpp's top-k", "greedy")


def chain_params(native, kind: str, seed: int):
    params = native.SamplerParams()
    params.seed = seed
    if kind == "greedy":
        params.temperature = 0.0
    else:
        params.temperature = 0.8
        if kind != "default":
            params.logit_bias = {0: 0.0}  # a sampler before top-k: llama.cpp's top-k sorts the vocabulary
    return params


def hot_row_us(native, model, row, kind: str, repeats: int) -> float:
    """Best of 5 rounds: microseconds per call on one row."""
    chain = native.SamplerChain(model, chain_params(native, kind, 1))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            chain.sample_logits(row)
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best * 1e6


def after_decode_us(native, model, n_rows: int, kind: str, steps: int, threads: int) -> dict[str, float]:
    """Medians over `steps` decodes of n_rows sequences: sample_batch right after the decode,
    and again, in microseconds per row."""
    params = native.ContextParams()
    params.n_seq_max = n_rows
    params.kv_unified = False
    params.n_ctx = (steps + 8) * n_rows
    params.n_threads = params.n_threads_batch = threads
    params.n_batch = params.n_ubatch = max(64, n_rows)
    params.flash_attn_type = 0
    ctx = native.Context(model, params)
    batch = native.Batch(max(64, n_rows), 1)
    jobs = [(native.SamplerChain(model, chain_params(native, kind, row)), row) for row in range(n_rows)]
    cold, again = [], []
    try:
        for step in range(steps):
            batch.clear()
            for seq in range(n_rows):
                batch.add(100 + seq, step, seq, True)
            ctx.decode(batch)
            t0 = time.perf_counter()
            native.sample_batch(ctx, jobs)
            t1 = time.perf_counter()
            native.sample_batch(ctx, jobs)
            t2 = time.perf_counter()
            cold.append(t1 - t0)
            again.append(t2 - t1)
    finally:
        ctx.close()
    return {name: statistics.median(values) / n_rows * 1e6
            for name, values in (("after a decode", cold), ("again", again))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a GGUF model; default: the tiny overhead model (built if missing)")
    parser.add_argument("--rows", default="1,8,64", help="sequences decoded together, then sampled")
    parser.add_argument("--steps", type=int, default=60, help="decodes per row count")
    parser.add_argument("--repeats", type=int, default=2000, help="calls per round on the hot row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.steps, args.repeats = "1,2", 3, 20
    row_counts = [int(x) for x in args.rows.split(",")]
    from allama import _native

    model = _native.Model.load(str(args.model or preset_model("overhead")), _native.ModelParams())
    try:
        n_vocab = _native.Vocab(model).n_tokens
        params = _native.ContextParams()
        params.n_threads = params.n_threads_batch = args.threads
        ctx = _native.Context(model, params)
        batch = _native.Batch(1, 1)
        batch.add(100, 0, 0, True)
        ctx.decode(batch)
        row = ctx.logits(0).copy()  # a real row of this model's logits
        ctx.close()
        print(f"Microseconds per row of {n_vocab:,} logits; {args.threads} threads.\n")
        print("| chain | hot row | " + " | ".join(f"{n} rows: after a decode / again" for n in row_counts) + " |")
        print("|---|---:|" + "---:|" * len(row_counts))
        for kind in CHAINS:
            cells = [f"{hot_row_us(_native, model, row, kind, args.repeats):.1f}"]
            for n in row_counts:
                after = after_decode_us(_native, model, n, kind, args.steps, args.threads)
                cells.append(" / ".join(f"{after[k]:.1f}" for k in ("after a decode", "again")))
            print(f"| {kind} | " + " | ".join(cells) + " |", flush=True)
    finally:
        model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
