"""A clone without vendor/llama.cpp builds in one step (`pip install .`): CMake's configure
fetches the pinned tree itself with vendor/fetch_llama_cpp.py, through pip and the user's
index settings, and says what to do when it cannot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .paths import REPO_ROOT

CMAKE = shutil.which("cmake", path=str(Path(sys.executable).parent)) or shutil.which("cmake")
pytestmark = pytest.mark.skipif(CMAKE is None, reason="cmake is not installed (scripts/bootstrap.sh installs it)")


def fresh_clone(tmp_path: Path) -> Path:
    """The tracked files only, as `git clone` gives them: no vendor/llama.cpp."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    clone = tmp_path / "clone"
    for name in filter(None, files.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    assert not (clone / "vendor" / "llama.cpp").exists()
    return clone


def configure(clone: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    import nanobind

    env = {k: v for k, v in env.items() if k != "ALLAMA_LLAMA_CPP_DIR"}  # (tests/conftest.py sets it)
    return subprocess.run(
        [CMAKE, "-S", str(clone), "-B", str(clone / "build"), f"-DPython_EXECUTABLE={sys.executable}",
         f"-Dnanobind_DIR={nanobind.cmake_dir()}"],
        capture_output=True, text=True, env=env, timeout=600)


def test_configure_fetches_the_pinned_tree_when_it_is_missing(tmp_path):
    clone = fresh_clone(tmp_path)
    run = configure(clone, dict(os.environ))
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    assert "fetching the pinned tree" in run.stdout
    assert (clone / "vendor" / "llama.cpp" / "include" / "llama.h").is_file()
    stamp = (clone / "vendor" / "llama.cpp" / ".allama-pin").read_text()
    assert stamp == (REPO_ROOT / "vendor" / "llama.cpp" / ".allama-pin").read_text()


def test_an_unreachable_index_is_a_clear_configure_error(tmp_path):
    clone = fresh_clone(tmp_path)
    offline = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    offline |= {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": (tmp_path / "no-index").as_uri(),
                "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0"}
    run = configure(clone, offline)
    assert run.returncode != 0
    assert "Could not fetch the pinned llama.cpp tree" in run.stderr
    assert "ALLAMA_LLAMA_CPP_ARCHIVE" in run.stderr
    assert not (clone / "vendor" / "llama.cpp" / "include" / "llama.h").exists()
