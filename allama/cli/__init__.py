"""The `allama` command: one module per subcommand, each adding its parser to `main`'s.

    allama chat       talk to a model in the terminal (streamed replies, history, /save)
    allama complete   continue a prompt (streamed; --json for the whole response)
    allama embed      embeddings of lines or JSONL records, as JSONL or .npy
    allama tokenize   token ids (and pieces) of a text
    allama bench      throughput at several numbers of concurrent streams, local or over HTTP
    allama serve      the OpenAI-compatible server (the `server` extra)
    allama rpc-server serve this machine's devices to a model on another host (RPC worker)
    allama info       a model's and this machine's details, for bug reports
    allama demo       generate text with the native layer

`allama COMMAND --help` shows each command's options and examples. Without --model a
command uses the demo model (allama.default_model).
"""

from __future__ import annotations

import argparse
import sys

from allama.cli import bench, chat, complete, demo, embed, info, rpc_server, serve, tokenize

# in `allama --help` order
COMMANDS = (chat, complete, embed, tokenize, bench, serve, rpc_server, info, demo)

EXAMPLES = """\
examples:
  allama chat                                  # the demo model, in the terminal
  allama chat --model model.gguf --n_ctx 8192
  allama complete -m model.gguf "The capital of France is" --max-tokens 16
  allama embed -m bert.gguf texts.txt -o vectors.npy
  allama tokenize -m model.gguf "Hello world"
  allama bench -m model.gguf --streams 1,4,8,16 --plot throughput.png
  allama serve --model model.gguf --port 8000
  allama rpc-server --host 10.0.0.2 --port 50052   # a worker for `allama serve --rpc 10.0.0.2:50052`
  allama info model.gguf --json
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="allama", description="asyncio-native llama.cpp: run GGUF models",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the server's own parser takes every setting
        return serve.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # `allama tokenize ... | head`
        sys.stderr.close()
        return 0
    except (FileNotFoundError, IsADirectoryError) as exc:
        print(f"allama {args.command}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # ModelLoadError, ContextOverflowError, bad input
        print(f"allama {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
