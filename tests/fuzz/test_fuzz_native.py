"""Fuzzing what reaches llama.cpp: mutated GGUF files through the loader, and random GBNF
through the grammar checker. Each input runs in its own forked child (a GGML_ASSERT would
abort the process): every child must end with a result or a clear Python exception."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import textwrap

import pytest

N_CASES = int(os.environ.get("ALLAMA_FUZZ_EXAMPLES", "150"))
SEED = int(os.environ.get("ALLAMA_FUZZ_SEED", "20261203"))  # scripts/fuzz.sh draws a new one


def run_harness(code: str, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "SKBUILD_EDITABLE_SKIP": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def mutations(data: bytes, n: int, seed: int) -> list[bytes]:
    """Byte-level mutations weighted to the header, the metadata and the tensor infos (the
    first kilobytes), where the loader's checks live: flips, 32/64-bit field overwrites with
    boundary values, truncations and duplications."""
    rng = random.Random(seed)
    head = min(len(data), 8192)
    out = []
    for _ in range(n):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            pos = rng.randrange(4, head - 8)
            if kind < 0.4:
                buf[pos] ^= 1 << rng.randrange(8)
            elif kind < 0.8:
                value = rng.choice([0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 40, (1 << 63) - 1, (1 << 64) - 1,
                                    rng.randrange(1 << 32)])
                width = rng.choice([4, 8])
                buf[pos:pos + width] = struct.pack("<Q", value & ((1 << 64) - 1))[:width]
            elif kind < 0.9:
                del buf[rng.randrange(len(buf) // 2, len(buf)):]
            else:
                buf[pos:pos] = buf[pos:pos + rng.randrange(1, 64)]
        out.append(bytes(buf))
    return out


def test_mutated_gguf_files_never_crash_the_loader(llama_f32_path, tmp_path):
    cases = mutations(llama_f32_path.read_bytes(), N_CASES, seed=SEED)
    paths = []
    for i, data in enumerate(cases):
        path = tmp_path / f"mutant-{i}.gguf"
        path.write_bytes(data)
        paths.append(str(path))
    out = run_harness(f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        from allama import _native
        from allama.errors import AllamaError
        from tests.fuzz.forked import run_forked

        def load(path):
            try:
                model = _native.Model.load(path)
            except (AllamaError, ValueError, OSError):
                return
            ctx = _native.Context(model, _native.ContextParams())
            batch = _native.Batch(4)
            batch.add_tokens([1, 2, 3], 0, 0, True)
            try:
                ctx.decode(batch)
            except (AllamaError, ValueError):
                pass

        report = run_forked(load, {paths!r})
        print("ok", report.ok, "crashed", report.crashed, "hung", report.hung)
    """)
    assert "crashed [] hung []" in out, out


GBNF_PIECES = ['root', '::=', '"a"', "'b'", "[a-z]", "[^\\n]", "(", ")", "*", "+", "?", "{2}", "{1,3}", "{0,}",
               "|", "x", "::=", "\n", " ", "#c\n", '"\\x', '"\\u12', "[", "]", "-", "{", "}", "{99999}", ".",
               "root ::= ", "a ::= a", "\\", '"', "<[1]>", "!"]


def test_random_grammars_parse_or_raise_grammar_error(tmp_path):
    rng = random.Random(SEED)
    grammars = ["".join(rng.choice(GBNF_PIECES) for _ in range(rng.randint(1, 14))) for _ in range(N_CASES)]
    grammars += ["root ::= " + g for g in grammars[: N_CASES // 2]]
    out = run_harness(f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        from allama import LlamaGrammar
        from allama.errors import GrammarError
        from tests.fuzz.forked import run_forked

        def check(text):
            try:
                LlamaGrammar.from_string(text)
            except GrammarError:
                pass

        report = run_forked(check, {grammars!r}, timeout=10)
        print("ok", report.ok, "crashed", report.crashed, "hung", report.hung)
    """)
    assert "crashed [] hung []" in out, out


def test_a_vocabulary_with_a_repeated_token_is_a_load_error_not_an_abort(llama_f32_path, tmp_path):
    # found by the mutation fuzzer: llama.cpp's vocab loader asserts that token texts are unique
    data = bytearray(llama_f32_path.read_bytes())
    first = data.index(b"<0x00>")
    second = data.index(b"<0x01>", first)
    data[second:second + 6] = b"<0x00>"
    path = tmp_path / "repeated-token.gguf"
    path.write_bytes(bytes(data))
    out = run_harness(f"""
        import allama
        from allama import _native
        for load in (lambda: _native.Model.load({str(path)!r}),
                     lambda: allama.quantize({str(path)!r}, {str(tmp_path / 'q.gguf')!r}, "Q8_0")):
            try:
                load()
                print("loaded")
            except allama.ModelLoadError as exc:
                print("refused:", exc)
    """)
    assert out.count("refused:") == 2 and "repeats an earlier token's text" in out, out


def test_a_tensor_of_a_type_ggml_cannot_compute_with_is_a_load_error(tmp_path, monkeypatch):
    # found while building fixtures: an F64 norm loads, then ggml aborts in its first decode
    import dataclasses

    import numpy as np

    from allama.testing import model_builder

    real_norm = model_builder._Weights.norm
    monkeypatch.setattr(model_builder._Weights, "norm", lambda self, n: real_norm(self, n).astype(np.float64))
    bad = model_builder.build_llama(tmp_path / "f64-norms.gguf",
                                    dataclasses.replace(model_builder.LlamaConfig(), n_layer=1))[0]
    out = run_harness(f"""
        import allama
        from allama import _native
        try:
            _native.Model.load({str(bad)!r})
            print("loaded")
        except allama.ModelLoadError as exc:
            print("refused:", exc)
    """)
    assert "refused:" in out and "of type f64" in out, out
