"""Concurrent completions under trio: allama's async API is built on anyio, so a trio program
awaits it exactly as an asyncio one does.

Run it::

    pip install allama trio
    python examples/trio_script.py --model model.gguf "The sky is" "Trio is" "Once upon a time"

The prompts are completed at once in a trio nursery (decoded together, in the same batches),
then the first one is streamed again token by token.
"""

from __future__ import annotations

import argparse
import os
import time

import trio

from allama import Llama

DEFAULT_PROMPTS = ["The capital of France is", "Structured concurrency means", "Once upon a time"]


async def complete(llm: Llama, prompt: str, max_tokens: int, results: dict[str, str]) -> None:
    out = await llm.create_completion(prompt, max_tokens=max_tokens)
    results[prompt] = out["choices"][0]["text"]


async def main(args: argparse.Namespace) -> None:
    prompts = args.prompts or DEFAULT_PROMPTS
    async with await Llama.load(args.model, n_parallel=len(prompts), n_threads=args.n_threads) as llm:
        results: dict[str, str] = {}
        started = time.perf_counter()
        with trio.fail_after(args.timeout):  # trio's cancellation reaches allama's requests too
            async with trio.open_nursery() as nursery:
                for prompt in prompts:
                    nursery.start_soon(complete, llm, prompt, args.max_tokens, results)
        print(f"{len(prompts)} completions at once in {time.perf_counter() - started:.2f} s:")
        for prompt in prompts:
            print(f"  {prompt!r} -> {results[prompt]!r}")

        print("streamed:", prompts[0], end="", flush=True)
        stream = await llm.create_completion(prompts[0], max_tokens=args.max_tokens, stream=True)
        async with stream:
            async for chunk in stream:
                print(chunk["choices"][0]["text"], end="", flush=True)
        print()
        stats = llm.stats()
        print(f"requests finished: {stats.requests_finished}, tokens generated: {stats.tokens_generated}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("prompts", nargs="*", help=f"prompts to complete (default: {DEFAULT_PROMPTS})")
    parser.add_argument("--model", default=os.environ.get("ALLAMA_MODEL"), help="GGUF file (default: $ALLAMA_MODEL)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--n-threads", type=int, default=None, help="CPU threads (default: llama.cpp's)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds the completions may take")
    args = parser.parse_args()
    if not args.model:
        parser.error("give --model or set ALLAMA_MODEL")
    return args


if __name__ == "__main__":
    trio.run(main, parse_args())
