"""`allama info`: what a bug report needs: the model's architecture, size, quantization,
context, special tokens and chat template, the CPU's features, and the buffer types llama.cpp
put the weights in on this machine."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  allama info                      # this machine only
  allama info model.gguf
  allama info model.gguf --json    # for a bug report
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("info", help="describe a model and this machine's CPU support (for bug reports)",
                            description=__doc__, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="a GGUF model; without it, only the machine")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from allama.info import cpu_info, format_info, model_info

    model = model_info(args.model) if args.model else None
    cpu = cpu_info()
    if args.json:
        print(json.dumps({"model": model, "system": cpu}, indent=2))
    else:
        print(format_info(model, cpu))
    return 0
