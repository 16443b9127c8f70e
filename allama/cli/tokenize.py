"""`allama tokenize`: the token ids of a text, with each token's piece (only the model's
vocabulary is loaded, so this is quick even for a large model)."""

from __future__ import annotations

import argparse
import json
import sys

from allama.cli.model_options import add_model_options, load_model

EXAMPLES = """\
examples:
  allama tokenize -m model.gguf "Hello world"       # id and piece per line
  allama tokenize -m model.gguf "Hello world" --ids # [1, 15043, 3186]
  allama tokenize -m model.gguf "<start_of_turn>user" --special --no-bos
  cat text.txt | allama tokenize -m model.gguf - --ids
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tokenize", help="token ids (and pieces) of a text", description=__doc__,
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", metavar="TEXT", help="the text; - reads it from stdin")
    add_model_options(parser)
    parser.add_argument("--ids", action="store_true", help="print only the ids, as a JSON list")
    parser.add_argument("--no-bos", dest="bos", action="store_false", help="no beginning-of-sequence token")
    parser.add_argument("--special", action="store_true",
                        help="parse special tokens written in the text (<|im_start|>, ...) as themselves")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    llm = load_model(args, vocab_only=True)
    try:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=args.bos, special=args.special)
        if args.ids:
            print(json.dumps(ids))
            return 0
        for token in ids:
            piece = llm.detokenize([token], special=True).decode("utf-8", errors="replace")
            print(f"{token}\t{json.dumps(piece, ensure_ascii=False)}")
        return 0
    finally:
        llm.close()
