"""`allama chat`: talk to a model in the terminal. Replies stream as they are generated; the
conversation is kept (and sent whole each turn) until /reset.

Input: Enter sends the line. A line ending with a backslash continues on the next line; a
block between triple quotes (\"\"\" on its own line, or opening the first line and closing the
last) is sent as one message. Ctrl-C while a reply streams stops it (the request is cancelled)
and returns to the prompt; Ctrl-C at the prompt clears the line, a second one leaves, as do
/exit and Ctrl-D. With readline (most Unix Pythons) the arrow keys edit and recall lines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from allama.cli.model_options import add_model_options, load_model

EXAMPLES = """\
commands (at the prompt):
  /system TEXT   set the system message (/system alone shows it)
  /reset         forget the conversation (the system message stays)
  /save FILE     write the conversation as JSON ({"model", "messages"})
  /help          this list
  /exit          leave (also Ctrl-D, or Ctrl-C twice at the prompt)

examples:
  allama chat                                   # the demo model (Gemma 3 270M)
  allama chat -m model.gguf --system "Answer in French." --temperature 0.2
  allama chat --hf ggml-org/gemma-3-1b-it-GGUF '*Q4_K_M.gguf' --n_ctx 8192
  echo "Why is the sky blue?" | allama chat -m model.gguf     # one turn, no prompts
"""

COMMANDS_HELP = EXAMPLES.split("\n\n")[0]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("chat", help="talk to a model in the terminal (streamed replies, history)",
                            description=__doc__, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser, n_ctx=4096, chat=True)
    parser.add_argument("--system", metavar="TEXT", help="the system message to start with")
    parser.add_argument("--max-tokens", type=int, default=None, metavar="N",
                        help="the longest reply in tokens (default: until the context is full)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed, for replies that repeat")
    parser.set_defaults(run=run)


class Conversation:
    """The messages so far, and what the slash commands do to them."""

    def __init__(self, system: str | None = None) -> None:
        self.system = system
        self.turns: list[dict[str, str]] = []

    @property
    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns

    def command(self, line: str, model: str) -> bool:
        """Runs a slash command; False for /exit."""
        name, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if name in ("/exit", "/quit", "/bye"):
            return False
        if name == "/system":
            if rest:
                self.system = rest
                _note("system message set")
            else:
                _note(f"system message: {self.system!r}" if self.system else "no system message")
        elif name == "/reset":
            self.turns.clear()
            _note("conversation cleared")
        elif name == "/save":
            if not rest:
                _note("usage: /save FILE")
            else:
                path = Path(rest).expanduser()
                try:
                    path.write_text(json.dumps({"model": model, "messages": self.messages}, indent=2,
                                               ensure_ascii=False) + "\n", encoding="utf-8")
                except OSError as exc:
                    _note(f"could not save: {exc}")
                else:
                    _note(f"saved {len(self.messages)} messages to {path}")
        elif name in ("/help", "/?"):
            print(COMMANDS_HELP, file=sys.stderr)
        else:
            _note(f"unknown command {name} (/help lists them)")
        return True


def run(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
    llm = load_model(args, n_parallel=1)
    llm.chat_formatter()  # now: a warning about the format (no chat template) comes before the first prompt
    conversation = Conversation(args.system)
    if interactive:
        _note("Ctrl-C stops a reply; /help lists the commands; /exit or Ctrl-D leaves")
    interrupted = False  # Ctrl-C at the prompt: a second one in a row leaves
    try:
        while True:
            try:
                text = read_message(">>> " if interactive else "", "... " if interactive else "")
                interrupted = False
                if not text.strip():
                    continue
                if text.lstrip().startswith("/"):
                    if not conversation.command(text, llm.model_path):
                        return 0
                    continue
                conversation.turns.append({"role": "user", "content": text})
                answer = stream_reply(llm, conversation.messages, args)
                if answer is None:  # not sent (the context is full): forget the question
                    conversation.turns.pop()
                else:
                    conversation.turns.append({"role": "assistant", "content": answer})
            except EOFError:
                if interactive:
                    print()
                return 0
            except KeyboardInterrupt:  # at the prompt (or between two replies)
                print()
                if interrupted or not interactive:
                    return 0
                interrupted = True
                _note("(Ctrl-C again or /exit to leave)")
    finally:
        llm.close()


def read_message(prompt: str, more: str) -> str:
    """One message: a line, lines joined by trailing backslashes, or a \"\"\" block."""
    line = input(prompt)
    if line.lstrip().startswith('"""'):
        body = line.lstrip()[3:]
        parts = []
        while not body.rstrip().endswith('"""'):
            parts.append(body)
            body = input(more)
        parts.append(body.rstrip()[:-3])
        return "\n".join(parts).strip("\n")
    parts = []
    while line.endswith("\\"):
        parts.append(line[:-1])
        line = input(more)
    parts.append(line)
    return "\n".join(parts)


def stream_reply(llm: Any, messages: list[dict[str, str]], args: argparse.Namespace) -> str | None:
    """Prints the reply as it streams and returns it (what came before a Ctrl-C, if one
    stopped it); None when the request was refused."""
    options: dict[str, Any] = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    if args.seed is not None:
        options["seed"] = args.seed
    stream = llm.create_chat_completion(messages, stream=True, **options)
    parts: list[str] = []
    try:
        for chunk in stream:
            delta = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if delta:
                parts.append(delta)
                sys.stdout.write(delta)
                sys.stdout.flush()
    except KeyboardInterrupt:
        _close(stream)
        return _stopped(parts)
    except RuntimeError as exc:
        # A Ctrl-C that lands while allama.sync hands a call to its loop can leave that call
        # running when the stream closes: "aclose(): asynchronous generator is already running",
        # raised over the KeyboardInterrupt. The stream, dropped, still cancels its request.
        if not isinstance(exc.__context__, KeyboardInterrupt):
            raise
        return _stopped(parts)
    except ValueError as exc:  # ContextOverflowError: the conversation no longer fits
        _note(f"{exc} (/reset starts over; --n_ctx sets a larger context)")
        return None
    print()
    return "".join(parts)


def _stopped(parts: list[str]) -> str:
    print()
    _note("[reply stopped]")
    return "".join(parts)


def _close(stream: Any) -> None:
    """Closes the stream (cancelling its request), even through more Ctrl-Cs."""
    while True:
        try:
            stream.close()
            return
        except KeyboardInterrupt:
            continue
        except RuntimeError:
            # "aclose(): asynchronous generator is already running": the Ctrl-C cancelled the
            # wait for the next chunk, and that cancellation, still unwinding the stream on the
            # loop, is what cancels the request.
            return


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
