"""A built wheel is self-contained: it imports and runs outside the checkout.

.ci/run builds the wheel with `pip wheel .` and sets ALLAMA_TEST_WHEEL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

WHEEL = os.environ.get("ALLAMA_TEST_WHEEL")
pytestmark = pytest.mark.skipif(not WHEEL, reason="ALLAMA_TEST_WHEEL is not set (.ci/run builds a wheel and sets it)")

SYSTEM_LIBS = ("libstdc++.so", "libm.so", "libgcc_s.so", "libc.so", "ld-linux", "libpthread.so", "libdl.so", "librt.so")


def test_wheel_ships_the_module_stubs_and_marker():
    names = zipfile.ZipFile(WHEEL).namelist()
    assert any(n.startswith("allama/_native") and n.endswith(".so") for n in names)
    assert "allama/_native.pyi" in names
    assert "allama/py.typed" in names
    assert "allama/__init__.py" in names and "allama/errors.py" in names
    # llama.cpp's example grammars, installed by the build (allama.grammar.JSON_GBNF & co.)
    assert {"allama/grammars/json.gbnf", "allama/grammars/arithmetic.gbnf"} <= set(names)


def test_extension_links_only_system_libraries(tmp_path):
    if shutil.which("readelf") is None:
        pytest.skip("readelf is not installed")
    with zipfile.ZipFile(WHEEL) as wheel:
        so = next(n for n in wheel.namelist() if n.startswith("allama/_native") and n.endswith(".so"))
        wheel.extract(so, tmp_path)
    dynamic = subprocess.run(["readelf", "-d", str(tmp_path / so)], capture_output=True, text=True, check=True).stdout
    needed = [line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line]
    assert needed
    assert all(any(lib.startswith(s) for s in SYSTEM_LIBS) for lib in needed), needed


def test_wheel_installs_and_decodes_in_a_fresh_environment(tmp_path, llama_f32_path):
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", WHEEL], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    script = f"""
import allama, allama._native as n
assert allama.__file__.startswith({purelib!r}), allama.__file__
m = n.Model.load({str(llama_f32_path)!r})
v = n.Vocab(m)
c = n.Context(m)
b = n.Batch(16); b.add_tokens(v.tokenize("Hello"), 0, 0, True); c.decode(b)
p = n.SamplerParams(); p.temperature = 0.0
print("token", n.SamplerChain(m, p).sample(c, -1))
from allama.grammar import JSON_GBNF, LlamaGrammar
assert LlamaGrammar.from_string(JSON_GBNF)
"""
    run = subprocess.run([str(python), "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("token ")
    assert sysconfig.get_paths()["purelib"] != purelib
    cli = subprocess.run([str(env_dir / "bin" / "allama"), "demo", "--model", str(llama_f32_path), "-n", "4"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr[-2000:]
