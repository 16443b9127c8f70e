"""docs/quickstart.md works as written: every code block in it runs here, on the tiny test models.

Each fenced block is preceded by a marker comment saying how it is checked:
`<!-- test: run -->` Python run as a script; `serve` the `allama serve --model` line, started and
then talked to by the `client` blocks (curl, the openai client); `chat` the `allama chat` lines,
fed a message on stdin; `install` the extras it names exist. Model file names are replaced by
the fixtures' paths, localhost:8000 by a free port, and models get one thread (`n_threads=1`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ..paths import REPO_ROOT
from ..server.live_server import free_port

QUICKSTART = REPO_ROOT / "docs" / "quickstart.md"
MARKERS = ("run", "serve", "client", "chat", "install")
CHAT_MODEL = "model.gguf"
EMBEDDING_MODEL = "bge-small-en-v1.5-f16.gguf"
TIMEOUT = 180

# Run before each Python block: one thread per model, whatever the block passes (2 shared CPUs).
ONE_THREAD = """\
import functools as _functools
import allama.llama as _allama_llama
_init = _allama_llama.Llama.__init__
@_functools.wraps(_init)
def _one_thread(self, *args, **kwargs):
    kwargs.setdefault("n_threads", 1)
    kwargs.setdefault("n_threads_batch", 1)
    _init(self, *args, **kwargs)
_allama_llama.Llama.__init__ = _one_thread
del _functools, _allama_llama
"""


@dataclass
class Block:
    marker: str | None
    language: str
    text: str
    line: int

    def __str__(self) -> str:
        return f"line {self.line} ({self.marker}, {self.language})"


def code_blocks() -> list[Block]:
    """The fenced blocks of the quickstart, each with the marker comment on the line before it."""
    blocks, lines = [], QUICKSTART.read_text().splitlines()
    i = 0
    while i < len(lines):
        if fence := re.fullmatch(r"```(\w*)", lines[i]):
            end = lines.index("```", i + 1)
            marker = re.fullmatch(r"<!-- test: (\w+) -->", lines[i - 1]) if i else None
            blocks.append(Block(marker and marker.group(1), fence.group(1), "\n".join(lines[i + 1:end]) + "\n",
                                i + 1))
            i = end
        i += 1
    return blocks


BLOCKS = code_blocks()
RUN_BLOCKS = [b for b in BLOCKS if b.marker == "run"]


def with_models(text: str, chat_model: Path, embedding_model: Path, quote=str) -> str:
    return text.replace(EMBEDDING_MODEL, quote(str(embedding_model))).replace(CHAT_MODEL, quote(str(chat_model)))


def shell_commands(block: Block) -> list[str]:
    """The commands of a bash block, one per line (backslash continuations joined, comments dropped)."""
    text = block.text.replace("\\\n", " ")
    return [shlex.join(shlex.split(line, comments=True)) for line in text.splitlines() if line.split("#")[0].strip()]


def allama_command(command: str) -> str:
    """`allama SUB ...` run by this Python, with one thread for the model."""
    return re.sub(r"\ballama (serve|chat)\b", lambda m: f"{shlex.quote(sys.executable)} -m allama {m.group(1)} "
                  "--n_threads 1", command)


def test_every_code_block_says_how_it_is_tested():
    assert BLOCKS
    unmarked = [str(b) for b in BLOCKS if b.marker not in MARKERS]
    assert not unmarked, f"blocks without a <!-- test: {'|'.join(MARKERS)} --> line before them: {unmarked}"
    assert all(b.language == "python" for b in RUN_BLOCKS)


def test_the_install_block_names_extras_that_exist():
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    commands = [c for b in BLOCKS if b.marker == "install" for c in shell_commands(b)]
    assert "pip install ." in commands
    named = [m.group(1) for c in commands if (m := re.search(r"\.\[(\w+)\]", c))]
    assert named and all(name in extras for name in named), (named, sorted(extras))


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: f"line{b.line}")
def test_python_block_runs(block: Block, llama_f32_path, bert_path, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(ONE_THREAD + with_models(block.text, llama_f32_path, bert_path))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT,
                            cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, f"{block}:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{block} printed nothing"


def test_the_served_model_answers_curl_and_the_openai_client(llama_f32_path, bert_path, tmp_path):
    serve = [c for b in BLOCKS if b.marker == "serve" for c in shell_commands(b) if "--model" in c]
    assert len(serve) == 1, serve
    port = free_port()
    command = allama_command(with_models(serve[0], llama_f32_path, bert_path, shlex.quote))
    command = command.replace("--port 8000", f"--port {port} --host 127.0.0.1")
    assert f"--port {port}" in command
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(shlex.split(command), stdout=log, stderr=log, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(server, base, tmp_path / "server.log")
        clients = [b for b in BLOCKS if b.marker == "client"]
        assert {b.language for b in clients} == {"bash", "python"}
        for block in clients:
            text = block.text.replace("localhost:8000", f"127.0.0.1:{port}")
            if block.language == "python":
                result = subprocess.run([sys.executable, "-c", text], capture_output=True, text=True, timeout=60)
                assert result.returncode == 0, f"{block}:\n{result.stdout}\n{result.stderr}"
            else:
                if shutil.which("curl") is None:
                    pytest.skip("curl is not installed")
                (curl,) = shell_commands(Block(block.marker, block.language, text, block.line))
                result = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=60)
                assert result.returncode == 0, f"{block}:\n{result.stderr}"
                response = json.loads(result.stdout)
                assert response["object"] == "chat.completion" and response["choices"][0]["message"]["role"] == "assistant"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
            log.close()


def wait_until_healthy(server: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, f"allama serve exited:\n{log.read_text(errors='replace')}"
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"allama serve did not become ready:\n{log.read_text(errors='replace')}")


def test_the_chat_commands_answer_a_message_on_stdin(llama_f32_path, bert_path, tmp_path):
    if subprocess.run([sys.executable, "-m", "allama", "chat", "--help"], capture_output=True).returncode != 0:
        pytest.skip("this build has no `allama chat`")
    commands = [c for b in BLOCKS if b.marker == "chat" for c in shell_commands(b)]
    assert len(commands) == 2, commands
    for command in commands:
        command = allama_command(with_models(command, llama_f32_path, bert_path, shlex.quote))
        # The interactive line gets its message and /exit on stdin; the piped one brings its own.
        stdin = None if "|" in command else "Name three colours.\n/exit\n"
        result = subprocess.run(["bash", "-c", command], input=stdin, capture_output=True, text=True,
                                timeout=TIMEOUT, cwd=tmp_path)
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
