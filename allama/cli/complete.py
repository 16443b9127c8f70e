"""`allama complete`: continue a prompt, printing the completion as it streams (no chat
template: the model sees the prompt as it is)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from allama.cli.model_options import add_model_options, load_model

EXAMPLES = """\
examples:
  allama complete "Once upon a time"                        # the demo model
  allama complete -m model.gguf "def fibonacci(n):" --max-tokens 64 --temperature 0
  cat prompt.txt | allama complete -m model.gguf - --seed 1
  allama complete -m model.gguf "2 + 2 =" --max-tokens 4 --json   # the whole response
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("complete", help="continue a prompt (streamed)", description=__doc__,
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt", metavar="PROMPT", help="the text to continue; - reads it from stdin")
    add_model_options(parser)
    parser.add_argument("-n", "--max-tokens", type=int, default=128, metavar="N",
                        help="the most tokens to generate (default %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed, for output that repeats")
    parser.add_argument("--stop", action="append", metavar="TEXT", help="stop before TEXT (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the whole response as JSON (not streamed)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    llm = load_model(args, n_parallel=1)
    options: dict[str, Any] = {"max_tokens": args.max_tokens, "temperature": args.temperature, "stop": args.stop}
    if args.seed is not None:
        options["seed"] = args.seed
    try:
        if args.json:
            print(json.dumps(llm.create_completion(prompt, **options), indent=2, ensure_ascii=False))
            return 0
        stream = llm.create_completion(prompt, stream=True, **options)
        try:
            for chunk in stream:
                sys.stdout.write(chunk["choices"][0]["text"] if chunk["choices"] else "")
                sys.stdout.flush()
        finally:
            stream.close()
        print()
        return 0
    finally:
        llm.close()
