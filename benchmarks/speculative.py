"""Speculative decoding: generated tokens/s with and without a draft model, allama vs
llama-cpp-python 0.3.36 (same llama.cpp build when benchmarks/build_peers.sh made one).

Two drafts, on one stream (greedy, EOS ignored):

  prompt-lookup  LlamaPromptLookupDecoding(max_ngram_size=2, num_pred_tokens=10) on text
                 that repeats its context. The benchmark model has random weights, which
                 never copy their context by themselves, so a grammar makes the reply repeat
                 the prompt's sentence; the model still spells each repetition with tokens of
                 its choosing, so proposals are right only in part (acceptance is printed).
  oracle         a draft that knows the reply (recorded in a first run) and proposes its
                 next 10 tokens: the upper bound, what a draft that is always right buys.

Prints a markdown table. Usage:

    python benchmarks/speculative.py                 # the ~125M F16 benchmark model
    python benchmarks/speculative.py --smoke         # seconds: tiny model, CI smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from concurrency import default_model  # beside this script: the same cached models

ROOT = Path(__file__).resolve().parents[1]
PEERS_BIN = ROOT / "build" / "peers" / "bin"
SENTENCE = "the cat sat on the mat and the dog sat on the log, "
REPEAT = f'root ::= ("{SENTENCE}")+'


class Recorder:
    """A draft model that proposes nothing and remembers the longest sequence it saw."""

    def __init__(self) -> None:
        self.sequence: list[int] = []

    def __call__(self, input_ids, /, **kwargs):
        if len(input_ids) > len(self.sequence):
            self.sequence = [int(t) for t in input_ids]
        return np.empty(0, dtype=np.intc)


class Oracle:
    """Proposes the next `n` tokens of a known sequence."""

    def __init__(self, sequence: list[int], n: int = 10) -> None:
        self.sequence, self.n = sequence, n

    def __call__(self, input_ids, /, **kwargs):
        k = len(input_ids)
        if list(input_ids) != self.sequence[:k]:
            return np.empty(0, dtype=np.intc)
        return np.array(self.sequence[k:k + self.n], dtype=np.intc)


def run_allama(model: str, prompt: str, args: argparse.Namespace, draft, grammar: str | None) -> tuple[float, int, float]:
    """(tokens/s, tokens, accepted share of proposals)."""
    from allama import Llama

    async def go() -> tuple[float, int, float]:
        async with Llama(model, n_ctx=args.ctx, n_parallel=1, n_threads=args.threads, n_threads_batch=args.threads,
                         draft_model=draft) as llm:
            await llm.create_completion(prompt, max_tokens=2, temperature=0.0)  # warm up
            t = time.perf_counter()
            out = await llm.create_completion(prompt, max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True,
                                              grammar=grammar)
            wall = time.perf_counter() - t
            s = llm.stats()
            n = out["usage"]["completion_tokens"]
            return n / wall, n, (s.draft_tokens_accepted / s.draft_tokens if s.draft_tokens else 0.0)

    return asyncio.run(go())


def run_peer(model: str, prompt: str, args: argparse.Namespace, draft, grammar: str | None) -> tuple[float, int] | None:
    try:
        from llama_cpp import Llama as PeerLlama
        from llama_cpp import LlamaGrammar
    except Exception as exc:  # noqa: BLE001
        print(f"llama-cpp-python unavailable ({exc}); run benchmarks/build_peers.sh", file=sys.stderr)
        return None
    llm = PeerLlama(model, n_ctx=args.ctx, n_threads=args.threads, n_threads_batch=args.threads, n_batch=512,
                    verbose=False, draft_model=draft)
    g = LlamaGrammar.from_string(grammar, verbose=False) if grammar else None
    llm.create_completion(prompt, max_tokens=2, temperature=0.0)
    t = time.perf_counter()
    out = llm.create_completion(prompt, max_tokens=args.max_tokens, temperature=0.0, grammar=g)
    wall = time.perf_counter() - t
    n = out["usage"]["completion_tokens"]
    del llm
    return n / wall, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a GGUF model; default: the ~125M F16 benchmark model (built if missing)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--systems", default="allama,llama-cpp-python")
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes: checks the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.max_tokens, args.systems = 24, "allama"
    args.ctx = 1024
    from allama import LlamaPromptLookupDecoding

    model = args.model or str(default_model(args.smoke))
    prompt = SENTENCE * 6
    print(f"model {model}; {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{args.threads} threads; generate {args.max_tokens}, one stream, greedy", file=sys.stderr)
    systems = args.systems.split(",")
    if "llama-cpp-python" in systems and PEERS_BIN.joinpath("libllama.so").exists():
        os.environ.setdefault("LLAMA_CPP_LIB_PATH", str(PEERS_BIN))  # the same llama.cpp build as allama
    rows = []
    for name, grammar in (("prompt-lookup", REPEAT), ("oracle", None)):
        recorder = Recorder()
        base = run_allama(model, prompt, args, recorder, grammar)  # proposes nothing: the plain rate
        draft = LlamaPromptLookupDecoding(2, 10) if name == "prompt-lookup" else Oracle(recorder.sequence)
        fast = run_allama(model, prompt, args, draft, grammar)
        row = [name, f"{base[0]:.1f}", f"{fast[0]:.1f}", f"{fast[0] / base[0]:.2f}x", f"{fast[2]:.0%}"]
        if "llama-cpp-python" in systems:
            from llama_cpp.llama_speculative import LlamaPromptLookupDecoding as PeerLookup

            peer_draft = PeerLookup(2, 10) if name == "prompt-lookup" else Oracle(recorder.sequence)
            peer_base = run_peer(model, prompt, args, None, grammar)
            peer_fast = run_peer(model, prompt, args, peer_draft, grammar)
            if peer_base and peer_fast:
                row += [f"{peer_base[0]:.1f}", f"{peer_fast[0]:.1f}", f"{peer_fast[0] / peer_base[0]:.2f}x",
                        f"{fast[0] / peer_fast[0]:.2f}x"]
        rows.append(row)
    head = ["draft", "allama tok/s", "allama + draft", "speed-up", "accepted"]
    if "llama-cpp-python" in systems:
        head += ["llama-cpp-python tok/s", "llama-cpp-python + draft", "its speed-up", "allama / it, with draft"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
