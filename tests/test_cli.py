"""The `allama` command."""

from __future__ import annotations

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
