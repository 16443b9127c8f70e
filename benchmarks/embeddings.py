"""Sentence embedding throughput: allama vs llama-cpp-python 0.3.36 on the same model.

(a) 64 concurrent callers with one sentence each (llama-cpp-python serves them one after
the other), (b) one call with 1,000 sentences. allama is measured for several packings
(inputs per batch). Prints a markdown table.

    python benchmarks/embeddings.py --model ../shared/models/all-minilm-l6-v2-f16.gguf
    python benchmarks/embeddings.py --smoke      # the tiny BERT fixture, CI smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

from preset_models import preset_model  # beside this script

ROOT = Path(__file__).resolve().parents[1]
PEERS_BIN = ROOT / "build" / "peers" / "bin"
WORDS = ("the quick brown fox jumps over lazy dog while cats sleep in warm sun and birds sing "
         "songs about rivers mountains cities people music science history art").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 14))) + "." for _ in range(n)]


def bench_allama(model: str, packings: list[int], threads: int, n_many: int) -> dict[int, tuple[float, float]]:
    from allama import Llama

    results = {}
    for seqs in packings:
        llm = Llama(model, n_ctx=512, n_parallel=1, n_threads=threads, n_threads_batch=threads)
        llm._scheduler.embedder.max_seqs = seqs

        async def run() -> tuple[float, float]:
            await llm.embed(sentences(8, 99))  # warm up
            callers = sentences(64, 1)
            t0 = time.perf_counter()
            await asyncio.gather(*(llm.embed(s) for s in callers))
            a = 64 / (time.perf_counter() - t0)
            many = sentences(n_many, 2)
            t0 = time.perf_counter()
            await llm.embed(many)
            b = n_many / (time.perf_counter() - t0)
            return a, b

        results[seqs] = asyncio.run(run())
        llm.close()
    return results


def bench_llama_cpp_python(model: str, threads: int, n_many: int) -> tuple[float, float] | None:
    if PEERS_BIN.joinpath("libllama.so").exists():
        os.environ.setdefault("LLAMA_CPP_LIB_PATH", str(PEERS_BIN))
    try:
        from llama_cpp import Llama as PeerLlama
    except Exception as exc:  # noqa: BLE001
        print(f"llama-cpp-python unavailable ({exc}); run benchmarks/build_peers.sh", file=sys.stderr)
        return None
    llm = PeerLlama(model, embedding=True, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=threads,
                    n_threads_batch=threads, verbose=False)
    llm.embed(sentences(8, 99))
    callers = sentences(64, 1)
    t0 = time.perf_counter()
    for s in callers:
        llm.embed(s)
    a = 64 / (time.perf_counter() - t0)
    many = sentences(n_many, 2)
    t0 = time.perf_counter()
    llm.embed(many)
    b = n_many / (time.perf_counter() - t0)
    llm.close()
    return a, b


class NativeLoop:
    """llama.cpp alone: token lists decoded k per batch straight through the native Context
    (no engine, no Python per input beyond the loop): what the machine can do."""

    def __init__(self, model: str, threads: int) -> None:
        from allama import _native

        self.native = _native
        self.model = _native.Model.load(model)
        self.vocab = _native.Vocab(self.model)
        self.threads = threads
        self.contexts: dict[int, object] = {}
        self.batch = _native.Batch(512, 1)

    def tokens(self, texts: list[str]) -> list[list[int]]:
        return [self.vocab.tokenize(s.encode(), True, False) for s in texts]

    def rate(self, tokens: list[list[int]], k: int) -> float:
        """Inputs per second, k per batch (or fewer where 512 tokens are reached first)."""
        import numpy as np

        if k not in self.contexts:
            params = self.native.ContextParams()
            params.n_ctx = params.n_batch = params.n_ubatch = -(-512 // k) * k  # a multiple of k (mean pooling)
            params.n_seq_max = k
            params.embeddings = True
            params.n_threads = params.n_threads_batch = self.threads
            params.flash_attn_type = 0
            self.contexts[k] = self.native.Context(self.model, params)
        ctx = self.contexts[k]
        groups: list[list[list[int]]] = [[]]
        for toks in tokens:
            if len(groups[-1]) == k or sum(map(len, groups[-1])) + len(toks) > 512:
                groups.append([])
            groups[-1].append(toks)
        batch = self.batch
        t0 = time.perf_counter()
        for group in groups:
            batch.clear()
            for seq, toks in enumerate(group):
                batch.add_tokens(toks, 0, seq, True)
            ctx.decode(batch)
            np.stack([ctx.embeddings_seq(seq) for seq in range(len(group))])
            ctx.memory_clear(False)
        return len(tokens) / (time.perf_counter() - t0)

    def close(self) -> None:
        for ctx in self.contexts.values():
            ctx.close()
        self.model.close()


def bench_ceiling(model: str, packings: list[int], threads: int, n_many: int) -> dict[int, float]:
    """llama.cpp alone on the 1,000 sentences, k per batch."""
    loop = NativeLoop(model, threads)
    tokens = loop.tokens(sentences(n_many, 2))
    out = {k: loop.rate(tokens, k) for k in packings}
    loop.close()
    return out


def bench_llama_cpp_python_chunked(model: str, threads: int, n_many: int, chunks: list[int]) -> dict[int, float]:
    """llama-cpp-python given the 1,000 sentences k at a time (its best packing, by hand)."""
    from llama_cpp import Llama as PeerLlama

    llm = PeerLlama(model, embedding=True, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=threads,
                    n_threads_batch=threads, verbose=False)
    many = sentences(n_many, 2)
    out = {}
    for k in chunks:
        t0 = time.perf_counter()
        for start in range(0, len(many), k):
            llm.embed(many[start:start + k])
        out[k] = len(many) / (time.perf_counter() - t0)
    llm.close()
    return out


def bench_interleaved(model: str, packings: list[int], threads: int, rounds: int) -> dict[str, list[float]]:
    """(a) only, in rounds that alternate allama (each packing) and llama-cpp-python's
    one-by-one calls, so that all see the same machine state: sentences/s per round."""
    from llama_cpp import Llama as PeerLlama

    from allama import Llama

    callers = sentences(64, 1)
    native = NativeLoop(model, threads)
    caller_tokens = native.tokens(callers)
    ours = {}
    for seqs in packings:
        ours[seqs] = Llama(model, n_ctx=512, n_parallel=1, n_threads=threads, n_threads_batch=threads)
        ours[seqs]._scheduler.embedder.max_seqs = seqs
    peer = PeerLlama(model, embedding=True, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=threads,
                     n_threads_batch=threads, verbose=False)
    peer.embed(sentences(8, 99))

    async def gathered(llm) -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(llm.embed(s) for s in callers))
        return 64 / (time.perf_counter() - t0)

    async def warm() -> None:
        for llm in ours.values():
            await llm.embed(sentences(8, 99))

    asyncio.run(warm())
    results: dict[str, list[float]] = {f"allama, packing {k}": [] for k in packings}
    results["llama-cpp-python, one by one"] = []
    ceiling_packings = sorted({1, *packings})
    for k in ceiling_packings:
        results[f"llama.cpp alone, packing {k}"] = []
    for _ in range(rounds):
        for seqs, llm in ours.items():
            results[f"allama, packing {seqs}"].append(asyncio.run(gathered(llm)))
        t0 = time.perf_counter()
        for s in callers:
            peer.embed(s)
        results["llama-cpp-python, one by one"].append(64 / (time.perf_counter() - t0))
        for k in ceiling_packings:
            results[f"llama.cpp alone, packing {k}"].append(native.rate(caller_tokens, k))
    for llm in ours.values():
        llm.close()
    peer.close()
    native.close()
    return results


def bench_beside_generation(model: str, threads: int, streams: int = 8, tokens: int = 48,
                            inputs: int = 64) -> dict[str, float]:
    """Wall times of (g) `streams` generating streams alone, (e) `inputs` embeddings alone, and
    (both) the two at once on one generative model (mean pooling for the embeddings)."""
    from allama import Llama

    llm = Llama(model, n_ctx=256, n_parallel=streams, kv_size=256 * streams, n_threads=threads,
                n_threads_batch=threads, pooling_type=1, n_keep=0)  # a window of KV cells per stream
    texts = sentences(inputs, 5)

    async def generate() -> None:
        await asyncio.gather(*(llm.create_completion(f"stream {i}", max_tokens=tokens, temperature=0,
                                                     ignore_eos=True) for i in range(streams)))

    async def embed() -> None:
        await asyncio.gather(*(llm.embed(t) for t in texts))

    async def timed(*jobs) -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(job() for job in jobs))
        return time.perf_counter() - t0

    async def run() -> dict[str, float]:
        await timed(generate)  # warm up
        await timed(embed)
        return {"generation alone": await timed(generate), "embeddings alone": await timed(embed),
                "both at once": await timed(generate, embed)}

    try:
        return asyncio.run(run())
    finally:
        llm.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--packings", default="1,2,4,8,16")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--interleaved", type=int, metavar="ROUNDS",
                        help="only (a): ROUNDS rounds alternating allama's packings and llama-cpp-python")
    parser.add_argument("--ceiling", action="store_true",
                        help="also time llama.cpp alone and llama-cpp-python fed k sentences per call")
    parser.add_argument("--beside-generation", metavar="GENERATIVE_GGUF",
                        help="also time 8 generating streams with and without embeddings beside them")
    args = parser.parse_args(argv)
    if args.smoke:
        from allama.testing.model_builder import BertConfig, build_bert

        path = ROOT / ".cache" / "bench-bert-tiny.gguf"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            build_bert(path, BertConfig())
        args.model, args.packings, args.sentences = str(path), "1,4", 32
    if not args.model:
        parser.error("--model is required (e.g. ../shared/models/all-minilm-l6-v2-f16.gguf)")
    packings = [int(x) for x in args.packings.split(",")]
    if args.interleaved:
        import statistics

        if PEERS_BIN.joinpath("libllama.so").exists():
            os.environ.setdefault("LLAMA_CPP_LIB_PATH", str(PEERS_BIN))
        rounds = bench_interleaved(args.model, packings, args.threads, args.interleaved)
        peer = rounds["llama-cpp-python, one by one"]
        print("| (a) 64 callers, sentences/s | " + " | ".join(str(i + 1) for i in range(args.interleaved))
              + " | median | median ratio |")
        print("|---" * (args.interleaved + 3) + "|")
        for name, values in rounds.items():
            ratio = statistics.median(values) / statistics.median(peer)
            print(f"| {name} | " + " | ".join(f"{v:.0f}" for v in values)
                  + f" | {statistics.median(values):.1f} | {ratio:.3f}x |")
        alone = {name: statistics.median(v) for name, v in rounds.items() if name.startswith("llama.cpp alone")}
        best = max(alone, key=alone.get)
        print(f"\nllama.cpp's own gain from packing these inputs: {best} / packing 1 = "
              f"{alone[best] / alone['llama.cpp alone, packing 1']:.3f}x (medians)")
        return 0
    ours = bench_allama(args.model, packings, args.threads, args.sentences)
    peer = None if args.smoke else bench_llama_cpp_python(args.model, args.threads, args.sentences)
    print(f"| inputs per batch | (a) 64 callers, sentences/s | (b) one call of {args.sentences}, sentences/s "
          "| (a) vs llama-cpp-python | (b) vs llama-cpp-python |")
    print("|---:|---:|---:|---:|---:|")
    for seqs, (a, b) in ours.items():
        ra = f"{a / peer[0]:.2f}x" if peer else "n/a"
        rb = f"{b / peer[1]:.2f}x" if peer else "n/a"
        print(f"| {seqs} | {a:.0f} | {b:.0f} | {ra} | {rb} |")
    if peer:
        print(f"| llama-cpp-python | {peer[0]:.0f} | {peer[1]:.0f} | 1.00x | 1.00x |")
    if args.ceiling or args.smoke:
        raw = bench_ceiling(args.model, packings, args.threads, args.sentences)
        chunked = {} if args.smoke or not peer else bench_llama_cpp_python_chunked(
            args.model, args.threads, args.sentences, packings)
        print(f"\n| k inputs per batch | llama.cpp alone, sentences/s | llama-cpp-python, {args.sentences} "
              "sentences in calls of k, sentences/s |\n|---:|---:|---:|")
        for k in packings:
            print(f"| {k} | {raw[k]:.0f} | {chunked[k]:.0f} |" if k in chunked else f"| {k} | {raw[k]:.0f} | n/a |")
    if args.beside_generation or args.smoke:
        gen_model = args.beside_generation or str(preset_model("tiny"))
        times = bench_beside_generation(gen_model, args.threads, tokens=8 if args.smoke else 48,
                                        inputs=8 if args.smoke else 64)
        print("\n| run | wall s |\n|---|---:|")
        for name, seconds in times.items():
            print(f"| {name} | {seconds:.2f} |")
        overhead = times["both at once"] - times["generation alone"] - times["embeddings alone"]
        print(f"| both minus the sum of the two alone | {overhead:+.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
