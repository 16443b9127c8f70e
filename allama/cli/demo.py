"""`allama demo`: generate text straight on the native layer (no engine), as a smoke test of
the build. Without --model it uses the demo model (Gemma 3 270M, the `demo` extra; else a tiny
random-weight llama, whose output is gibberish, said on stderr)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXAMPLES = """\
examples:
  allama demo
  allama demo --model model.gguf --prompt "Once upon a time" -n 64 --temperature 0
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="generate text from a prompt on the native layer (a build check)",
                            description=__doc__, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a GGUF model; default: the demo model")
    parser.add_argument("--prompt", default="Once upon a time")
    parser.add_argument("-n", "--max-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("ALLAMA_SEED", 42)))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from allama import _native
    from allama.default_model import default_model

    model_path = Path(args.model) if args.model else default_model().path
    model = _native.Model.load(str(model_path))
    vocab = _native.Vocab(model)
    params = _native.ContextParams()
    params.n_ctx = max(256, args.max_tokens + 64)
    ctx = _native.Context(model, params)
    sampling = _native.SamplerParams()
    sampling.temperature = args.temperature
    sampling.seed = args.seed
    sampler = _native.SamplerChain(model, sampling)

    prompt = vocab.tokenize(args.prompt)
    batch = _native.Batch(max(len(prompt), 1))
    batch.add_tokens(prompt, 0, 0, True)
    start = time.perf_counter()
    ctx.decode(batch)
    print(f"{model.description}, {model.n_params / 1e6:.1f}M parameters", file=sys.stderr)
    sys.stdout.write(args.prompt)
    pending = b""
    generated = 0
    for pos in range(len(prompt), len(prompt) + args.max_tokens):
        token = sampler.sample(ctx, -1)
        if vocab.is_eog(token):
            break
        generated += 1
        pending += vocab.token_to_piece(token)
        try:
            sys.stdout.write(pending.decode("utf-8"))
            pending = b""
        except UnicodeDecodeError:
            pass  # a character split across tokens: wait for the rest
        sys.stdout.flush()
        batch.clear()
        batch.add(token, pos, 0, True)
        ctx.decode(batch)
    elapsed = time.perf_counter() - start
    print(f"\n[{len(prompt)} prompt + {generated} generated tokens in {elapsed:.2f} s]", file=sys.stderr)
    return 0
