"""`allama rpc-server`: serve this machine's devices (every GPU, else the CPU) to a model
loaded on another host with `Llama(rpc_servers=[...])` or `allama serve --rpc`: that model's
layers are spread over its workers (ggml's RPC backend; docs/deploying.md)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  allama rpc-server --host 10.0.0.2 --port 50052      # on each worker host
  allama rpc-server --host 10.0.0.2 --threads 8 --cache ~/.cache/allama/rpc
  allama serve --model model.gguf --rpc 10.0.0.2:50052,10.0.0.3:50052   # on the front host

The protocol has no authentication or encryption: listen on a private network only.
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("rpc-server", help="serve this machine's devices to a model on another host (RPC worker)",
                            description=__doc__, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="IPv4 address to listen on (default %(default)s: this machine only)")
    parser.add_argument("--port", type=int, default=50052, help="TCP port (default %(default)s)")
    parser.add_argument("--threads", "-t", type=int, default=None, metavar="N",
                        help="CPU threads when serving the CPU (default: half the CPUs)")
    parser.add_argument("--cache", metavar="DIR", nargs="?", const="", default=None,
                        help="keep tensors a client sent in DIR, so that loading the same model again sends "
                             "only hashes (without DIR: ~/.cache/allama/rpc)")
    parser.add_argument("--device", "-d", action="append", default=[], metavar="NAME",
                        help="a device to serve (repeat for several; names as `allama info` lists them); "
                             "default: every GPU, else the CPU")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from allama import _native

    threads = args.threads or max(1, (os.cpu_count() or 2) // 2)
    cache_dir = None
    if args.cache is not None:
        cache = Path(args.cache).expanduser() if args.cache else Path.home() / ".cache" / "allama" / "rpc"
        cache.mkdir(parents=True, exist_ok=True)
        cache_dir = str(cache)
    if not _is_loopback(args.host):
        print(f"allama rpc-server: listening on {args.host}: anyone who reaches this port can use this machine's "
              "devices and read what they hold; keep it on a private network", file=sys.stderr)
    # The worker has no state worth a clean exit: Ctrl-C and SIGTERM end it at once (the native
    # accept loop never returns to Python to see a KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.stdout.flush()
    try:
        _native.serve_rpc_worker(args.host, args.port, threads, cache_dir, args.device)
    except (OSError, ValueError) as exc:
        print(f"allama rpc-server: {exc}", file=sys.stderr)
        return 1
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
