"""`allama serve`: the OpenAI-compatible server (needs `pip install 'allama[server]'`), on the
demo model without --model or --config. Every server and model setting is a flag; the server's
own parser (allama.server.cli) reads them."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """\
examples:
  allama serve                                        # the demo model on 127.0.0.1:8000
  allama serve --model model.gguf --alias m --n_parallel 8 --host 0.0.0.0 --port 8000
  allama serve --hf_model_repo_id ggml-org/gemma-3-1b-it-GGUF --model '*Q4_K_M.gguf'
  allama serve --config models.yaml                   # several models, chosen by `model`
  N_CTX=8192 allama serve --model model.gguf          # settings from the environment
"""


def register(sub: argparse._SubParsersAction) -> None:
    # Only for `allama --help`: main() hands `allama serve ...` to main() below before parsing.
    sub.add_parser("serve", help="run the OpenAI-compatible server (allama serve --help)", add_help=False)


def main(argv: list[str]) -> int:
    try:
        from allama.server.cli import build_parser
        from allama.server.cli import main as serve
    except ImportError as exc:
        print(f"allama serve needs the server extra ({exc.name} is missing): pip install 'allama[server]'",
              file=sys.stderr)
        return 2
    if any(arg in ("-h", "--help") for arg in argv):
        parser = build_parser()
        parser.prog = "allama serve"
        parser.description = __doc__
        parser.epilog = EXAMPLES
        parser.formatter_class = _Formatter
        parser.print_help()
        return 0
    return serve(argv)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, the description and examples as written."""
