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
