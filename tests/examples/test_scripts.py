"""examples/trio_script.py and examples/rag.py, run as the scripts users start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .example_scripts import EXAMPLES_DIR

TIMEOUT = 120


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python examples/<name>.py ARGS`, with one model thread; its exit status and output."""
    command = [sys.executable, str(EXAMPLES_DIR / f"{name}.py"), *args, "--n-threads", "1"]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)


def test_trio_script_completes_prompts_at_once_and_streams(llama_f32_path):
    prompts = ["Red is", "Green is", "Blue is"]
    result = run_example("trio_script", "--model", str(llama_f32_path), "--max-tokens", "8", *prompts)
    assert result.returncode == 0, result.stderr
    assert "3 completions at once" in result.stdout
    assert all(f"{prompt!r} -> " in result.stdout for prompt in prompts)
    assert "streamed: Red is" in result.stdout
    assert "requests finished: 4," in result.stdout


def write_notes(folder: Path) -> None:
    folder.mkdir()
    (folder / "release.txt").write_text("The next release is planned for March.\n\nIt adds trio support.\n")
    (folder / "team.md").write_text("# Team\n\nAda maintains the engine. Grace maintains the server.\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "faq.txt").write_text("Q: Does it run on a GPU?\n\nA: Yes, with CUDA or Metal builds.\n")
    (folder / "image.png").write_bytes(b"\x89PNG not text")


def test_rag_answers_with_the_retrieved_sources(llama_f32_path, bert_path, tmp_path):
    write_notes(tmp_path / "notes")
    result = run_example("rag", "--docs", str(tmp_path / "notes"), "--embedding-model", str(bert_path),
                         "--chat-model", str(llama_f32_path), "--n-ctx", "1024", "--top-k", "2",
                         "--max-tokens", "16", "When is the next release?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("question: When is the next release?\nanswer: ")
    sources = result.stdout.rpartition("\nsources:\n")[2].splitlines()
    # random-weight models: which chunks come first is arbitrary, but they are the folder's text files
    assert [line.split(":")[0].strip()[:3] for line in sources] == ["[1]", "[2]"]
    assert all(line.split()[1].rstrip(":") in ("release.txt", "team.md", "sub/faq.txt") for line in sources)


def test_rag_says_so_when_the_folder_has_no_text(llama_f32_path, bert_path, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_example("rag", "--docs", str(tmp_path / "empty"), "--embedding-model", str(bert_path),
                         "--chat-model", str(llama_f32_path), "anything?")
    assert result.returncode == 1 and "no .txt or .md text" in result.stderr
