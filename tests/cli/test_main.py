"""The `allama` command: its help, `demo`, `info`, and `serve` without the server extra."""

from __future__ import annotations

import pytest

from allama import cli


def test_demo_generates_from_a_given_model(llama_f32_path, capsys):
    assert cli.main(["demo", "--model", str(llama_f32_path), "--prompt", "Hello", "-n", "8", "--temperature", "0"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Hello")
    assert len(out) > len("Hello")
    assert "generated tokens" in err


def test_demo_is_deterministic_for_a_seed(llama_f32_path, capsys):
    args = ["demo", "--model", str(llama_f32_path), "-n", "12", "--seed", "5"]
    cli.main(args)
    first = capsys.readouterr().out
    cli.main(args)
    assert capsys.readouterr().out == first


def test_serve_without_the_server_extra_says_how_to_get_it(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def without_uvicorn(name, *args, **kwargs):
        if name.startswith("allama.server") or name.split(".")[0] in ("fastapi", "uvicorn", "pydantic_settings"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_uvicorn)
    from allama.cli import main

    assert main(["serve", "--model", "m.gguf"]) == 2
    assert "pip install 'allama[server]'" in capsys.readouterr().err


def test_info_describes_the_model_and_the_cpu(llama_f32_path, capsys):
    assert cli.main(["info", str(llama_f32_path)]) == 0
    out = capsys.readouterr().out
    assert "architecture           llama" in out
    assert "quantization           F32" in out
    assert "special tokens         bos=1 '<s>'" in out
    assert "weights in             CPU" in out
    assert "llama.cpp cpu features" in out and "CPU_REPACK" in out


def test_info_json_without_a_model(capsys):
    import json

    assert cli.main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] is None
    assert report["system"]["llama_cpp_cpu_features"]
    assert "AMX" not in report["system"]["cpu_extra_buffer_types"]


def test_python_dash_m_allama_runs_the_command(tmp_path):
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "allama", "info"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SKBUILD_EDITABLE_SKIP": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "cpu buffer types" in proc.stdout


COMMANDS = ("chat", "complete", "embed", "tokenize", "bench", "serve", "info", "demo")


def test_help_lists_every_command_with_examples():
    from .running import allama

    proc = allama("--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert f"    {command} " in proc.stdout
    assert "examples:" in proc.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command, capsys):
    try:
        status = cli.main([command, "--help"])  # serve prints its server's help and returns
    except SystemExit as exit:  # argparse's help exits
        status = exit.code or 0
    assert status == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: allama {command}")
    assert "examples:" in out and f"allama {command}" in out.split("examples:")[1]
