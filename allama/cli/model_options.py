"""The options every model-running command shares (`--model PATH | --hf REPO FILE`,
`--n_ctx`, `--n_threads`, ...) and loading the model they name, with a progress bar."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from allama.cli.progress import Progress


def add_model_options(parser: argparse.ArgumentParser, *, n_ctx: int = 2048, chat: bool = False) -> None:
    """Adds the model group to `parser`; `chat` adds --chat_format."""
    group = parser.add_argument_group("model")
    source = group.add_mutually_exclusive_group()
    source.add_argument("-m", "--model", metavar="PATH",
                        help="a GGUF file; default: the demo model (Gemma 3 270M from the `demo` extra, "
                             "else a tiny random-weight llama)")
    source.add_argument("--hf", nargs=2, metavar=("REPO", "FILE"),
                        help="download FILE (a glob, e.g. '*Q4_K_M.gguf') from the Hugging Face Hub repo "
                             "REPO (needs huggingface_hub: pip install 'allama[hf]')")
    group.add_argument("--n_ctx", "--n-ctx", type=int, default=n_ctx, metavar="N",
                       help="context window in tokens (0: the model's own; default %(default)s)")
    group.add_argument("--n_threads", "--n-threads", "-t", type=int, default=None, metavar="N",
                       help="CPU threads (default: half the CPUs)")
    group.add_argument("--n_batch", "--n-batch", type=int, default=512, metavar="N",
                       help="tokens per decode step (default %(default)s)")
    group.add_argument("--n_gpu_layers", "--n-gpu-layers", "-ngl", type=int, default=0, metavar="N",
                       help="layers to offload to a GPU (-1: all; default %(default)s)")
    if chat:
        group.add_argument("--chat_format", "--chat-format", metavar="NAME",
                           help="a named chat format (chatml, llama-2, gemma, ...); default: the model's template")
    group.add_argument("-q", "--quiet", action="store_true", help="no loading progress bar or summary on stderr")
    group.add_argument("--verbose", action="store_true", help="llama.cpp's own log lines on stderr")


def model_source(args: argparse.Namespace) -> tuple[Path, str | None]:
    """The file to load and the chat format it comes with (the demo model's), downloading
    from the Hub for --hf."""
    if getattr(args, "hf", None):
        from allama.hub import download_model

        repo, pattern = args.hf
        return Path(download_model(repo, pattern)), None
    if getattr(args, "model", None):
        return Path(args.model), None
    from allama.default_model import default_model

    demo = default_model()
    return demo.path, demo.chat_format


def load_model(args: argparse.Namespace, *, asynchronous: bool = False, **params: Any) -> Any:
    """An allama.sync.Llama (or allama.Llama) for the command's model options, with a progress
    bar on stderr while llama.cpp loads the weights (unless --quiet)."""
    if asynchronous:
        from allama import Llama
    else:
        from allama.sync import Llama

    path, chat_format = model_source(args)
    kwargs: dict[str, Any] = {"n_ctx": args.n_ctx, "n_threads": args.n_threads, "n_batch": args.n_batch,
                              "n_gpu_layers": args.n_gpu_layers, "verbose": args.verbose}
    if hasattr(args, "chat_format"):
        kwargs["chat_format"] = args.chat_format or chat_format
    kwargs.update(params)
    with _sigint_for_the_main_thread():
        if args.quiet:
            return Llama(path, **kwargs)
        return _load_with_progress(Llama, path, kwargs)


def _load_with_progress(Llama: Any, path: Path, kwargs: dict[str, Any]) -> Any:
    start = time.monotonic()
    bar = Progress(100, f"loading {path.name}", "%", counts=False)

    def advance(fraction: float) -> bool:
        target = int(fraction * 100)
        if target > bar.done:
            bar.update(target - bar.done)
        return True

    try:
        llm = Llama(path, progress_callback=advance, **kwargs)
        advance(1.0)
    finally:
        bar.close()
    print(f"allama: {path.name} loaded in {time.monotonic() - start:.1f} s", file=sys.stderr)
    return llm


@contextlib.contextmanager
def _sigint_for_the_main_thread() -> Iterator[None]:
    """Blocks SIGINT while the model's threads start (they, and the threads they start, inherit
    the mask), so that Ctrl-C always lands on the main thread: one that waits in readline (the
    chat prompt) would otherwise miss a SIGINT the kernel handed to another thread."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
