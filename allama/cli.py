"""The `allama` command.

Subcommands:
    allama demo [--model PATH] [--prompt TEXT] [-n N]
        Generates text with the native layer. Without --model it uses the demo model
        (Gemma 3 270M, the `demo` extra; else a tiny random-weight llama, whose output is
        gibberish, said on stderr).
    allama info [MODEL] [--json]
        What a bug report needs: the model's architecture, size, quantization, context,
        special tokens and chat template, the CPU's features, and the buffer types
        llama.cpp put the weights in on this machine.
    allama serve [--model PATH] [--alias NAME] [--n_parallel N] [--config FILE] [--host H] [--port P]
        The OpenAI-compatible server (needs `pip install allama[server]`), on the demo model
        without --model or --config; see
        `allama serve --help` for every setting.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def run_demo(args: argparse.Namespace) -> int:
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


def run_info(args: argparse.Namespace) -> int:
    import json

    from allama.info import cpu_info, format_info, model_info

    model = model_info(args.model) if args.model else None
    cpu = cpu_info()
    if args.json:
        print(json.dumps({"model": model, "system": cpu}, indent=2))
    else:
        print(format_info(model, cpu))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        try:
            from allama.server.cli import main as serve
        except ImportError as exc:
            print(f"allama serve needs the server extra ({exc.name} is missing): pip install 'allama[server]'",
                  file=sys.stderr)
            return 2
        return serve(argv[1:])
    parser = argparse.ArgumentParser(prog="allama", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="generate text from a prompt")
    sub.add_parser("serve", help="run the OpenAI-compatible server (allama serve --help)")
    info = sub.add_parser("info", help="describe a model and this machine's CPU support (for bug reports)",
                          epilog="example: allama info model.gguf --json")
    info.add_argument("model", nargs="?", help="a GGUF model; without it, only the machine")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    demo.add_argument("--model", help="a GGUF model; default: a tiny random one built on the spot")
    demo.add_argument("--prompt", default="Once upon a time")
    demo.add_argument("-n", "--max-tokens", type=int, default=48)
    demo.add_argument("--temperature", type=float, default=0.8)
    demo.add_argument("--seed", type=int, default=int(os.environ.get("ALLAMA_SEED", 42)))
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args)
    if args.command == "info":
        return run_info(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
