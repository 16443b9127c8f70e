"""Answer a question about a folder of text files: retrieval-augmented generation with two models.

Run it::

    pip install allama
    python examples/rag.py --docs notes/ --embedding-model bge-small-en-v1.5-f16.gguf \\
        --chat-model qwen2.5-1.5b-instruct-q4_k_m.gguf "When is the next release planned?"

The .txt and .md files under --docs are split into paragraph-sized chunks and embedded with the
embedding model (batched by the engine); the question is embedded too, the closest chunks by
cosine similarity are put in the prompt, and the chat model's answer is streamed. Both models
load at once, off the event loop. The sources are printed after the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from allama import Llama

SYSTEM = ("Answer the question using only the context below. If the context does not hold the "
          "answer, say so. Cite the sources you used by their [number].")


@dataclass
class Chunk:
    source: str  # the file, relative to the folder
    text: str


def read_chunks(folder: Path, max_chars: int) -> list[Chunk]:
    """The text files' paragraphs, merged up to `max_chars` each (a longer paragraph stays whole;
    the embedder truncates it to its context)."""
    chunks = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".txt", ".md") and p.is_file()):
        current = ""
        for paragraph in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            paragraph = " ".join(paragraph.split())
            if current and len(current) + len(paragraph) + 1 > max_chars:
                chunks.append(Chunk(str(path.relative_to(folder)), current))
                current = ""
            current = f"{current} {paragraph}".strip() if paragraph else current
        if current:
            chunks.append(Chunk(str(path.relative_to(folder)), current))
    return chunks


async def retrieve(embedder: Llama, chunks: list[Chunk], question: str, top_k: int) -> list[Chunk]:
    """The `top_k` chunks closest to the question (unit vectors: the dot product is the cosine)."""
    # Two concurrent calls: their inputs share the engine's embedding batches.
    vectors, (query,) = await asyncio.gather(embedder.embed([c.text for c in chunks], normalize=True),
                                             embedder.embed([question], normalize=True))
    scores = np.asarray(vectors, dtype=np.float32) @ np.asarray(query, dtype=np.float32)
    return [chunks[i] for i in np.argsort(-scores)[:top_k]]


async def answer(chat: Llama, question: str, context: list[Chunk], max_tokens: int) -> str:
    """Streams the chat model's answer to stdout, and returns it."""
    sources = "\n\n".join(f"[{n}] ({c.source}) {c.text}" for n, c in enumerate(context, 1))
    messages = [{"role": "system", "content": f"{SYSTEM}\n\nContext:\n{sources}"},
                {"role": "user", "content": question}]
    stream = await chat.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.2,
                                               stream=True)
    parts = []
    async with stream:
        async for chunk in stream:
            parts.append(chunk["choices"][0]["delta"].get("content") or "")
            print(parts[-1], end="", flush=True)
    print()
    return "".join(parts)


async def main(args: argparse.Namespace) -> int:
    chunks = read_chunks(args.docs, args.chunk_chars)
    if not chunks:
        print(f"no .txt or .md text under {args.docs}", file=sys.stderr)
        return 1
    embedder, chat = await asyncio.gather(
        Llama.load(args.embedding_model, n_threads=args.n_threads),
        Llama.load(args.chat_model, n_ctx=args.n_ctx, n_threads=args.n_threads))
    async with embedder, chat:
        context = await retrieve(embedder, chunks, args.question, args.top_k)
        print(f"question: {args.question}\nanswer: ", end="", flush=True)
        await answer(chat, args.question, context, args.max_tokens)
    print("sources:")
    for n, chunk in enumerate(context, 1):
        print(f"  [{n}] {chunk.source}: {chunk.text[:70]}{'...' if len(chunk.text) > 70 else ''}")
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("question")
    parser.add_argument("--docs", type=Path, required=True, help="folder of .txt and .md files")
    parser.add_argument("--embedding-model", required=True, help="GGUF embedding model (BERT-like)")
    parser.add_argument("--chat-model", required=True, help="GGUF chat model")
    parser.add_argument("--top-k", type=int, default=3, help="chunks put in the prompt")
    parser.add_argument("--chunk-chars", type=int, default=800, help="chunk size in characters")
    parser.add_argument("--n-ctx", type=int, default=4096, help="the chat model's context")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--n-threads", type=int, default=None, help="CPU threads (default: llama.cpp's)")
    args = parser.parse_args()
    if not args.docs.is_dir():
        parser.error(f"--docs {args.docs} is not a folder")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
