"""`allama embed`: embeddings of many inputs, in order, with a progress bar on stderr.

INPUT is a text file (one input per line; blank lines are skipped), a JSONL file (one
{"text": ...} object per line), or - for stdin; JSONL is recognised by a .jsonl/.ndjson
suffix or by a first line that is such an object. The output is JSONL ({"index", "embedding"}
per line, index counting the inputs from 0) on stdout or in OUT, or a NumPy array of shape
(inputs, dimensions) when OUT ends with .npy."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from allama.cli.model_options import add_model_options, load_model
from allama.cli.progress import Progress

EXAMPLES = """\
examples:
  allama embed -m bge-small.gguf sentences.txt -o vectors.npy --normalize
  allama embed -m bge-small.gguf docs.jsonl -o docs.embeddings.jsonl
  echo "hello world" | allama embed -m bge-small.gguf -
  allama embed -m model.gguf texts.txt --pooling last      # a decoder's last-token embedding
"""

POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
BATCH = 64  # inputs per call: bounded memory, output in order, the bar moving


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("embed", help="embeddings of lines or JSONL records, as JSONL or .npy",
                            description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", metavar="INPUT", help="a text or JSONL file; - reads stdin")
    parser.add_argument("-o", "--output", metavar="OUT", help="a .jsonl or .npy file (default: JSONL on stdout)")
    add_model_options(parser, n_ctx=0)
    parser.add_argument("--normalize", action="store_true", help="scale each vector to unit length")
    parser.add_argument("--pooling", choices=list(POOLING),
                        help="how token vectors become one (default: the model's; none gives one per token)")
    parser.set_defaults(run=run)


def read_inputs(source: TextIO, name: str) -> list[str]:
    lines = [line.rstrip("\r\n") for line in source]
    jsonl = name.endswith((".jsonl", ".ndjson"))
    if not jsonl:
        first = next((line for line in lines if line.strip()), "")
        if first.lstrip().startswith("{"):
            try:
                jsonl = isinstance(json.loads(first), dict) and "text" in json.loads(first)
            except json.JSONDecodeError:
                jsonl = False
    if not jsonl:
        return [line for line in lines if line.strip()]
    texts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            text = record["text"]
        except (json.JSONDecodeError, TypeError, KeyError):
            raise ValueError(f"{name}, line {number}: expected a JSON object with a \"text\" string") from None
        if not isinstance(text, str):
            raise ValueError(f"{name}, line {number}: \"text\" must be a string")
        texts.append(text)
    return texts


def embeddings(llm: Any, texts: list[str], normalize: bool) -> Iterable[Any]:
    """The vectors of `texts`, in order, a batch at a time, advancing a progress bar."""
    with Progress(len(texts), "embedding", "inputs") as bar:
        for start in range(0, len(texts), BATCH):
            batch = texts[start:start + BATCH]
            yield from llm.embed(batch, normalize=normalize)
            bar.update(len(batch))


def run(args: argparse.Namespace) -> int:
    if args.input == "-":
        texts = read_inputs(sys.stdin, "stdin")
    else:
        with open(args.input, encoding="utf-8") as f:
            texts = read_inputs(f, args.input)
    params: dict[str, Any] = {"embedding": True, "n_parallel": 1}
    if args.pooling is not None:
        params["pooling_type"] = POOLING[args.pooling]
    llm = load_model(args, **params)
    try:
        vectors = embeddings(llm, texts, args.normalize)
        if args.output and args.output.endswith(".npy"):
            import numpy as np

            rows = list(vectors)
            if args.pooling == "none":
                raise ValueError("--pooling none gives one vector per token: write JSONL, not .npy")
            width = llm.n_embd()
            np.save(args.output, np.asarray(rows, dtype=np.float32).reshape(len(rows), width))
        elif args.output:
            with open(args.output, "w", encoding="utf-8") as out:
                write_jsonl(vectors, out)
        else:
            write_jsonl(vectors, sys.stdout)
    finally:
        llm.close()
    if args.output:
        print(f"allama: {len(texts)} embeddings written to {Path(args.output)}", file=sys.stderr)
    return 0


def write_jsonl(vectors: Iterable[Any], out: TextIO) -> None:
    for index, vector in enumerate(vectors):
        out.write(json.dumps({"index": index, "embedding": vector}) + "\n")
