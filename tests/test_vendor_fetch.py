"""vendor/fetch_llama_cpp.py: pin checking, idempotence and clear failures."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

from .conftest import REPO_ROOT


@pytest.fixture()
def fetch(tmp_path, monkeypatch):
    """The script's module, pointed at a scratch vendor folder."""
    spec = importlib.util.spec_from_file_location("fetch_llama_cpp", REPO_ROOT / "vendor" / "fetch_llama_cpp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "VENDOR_DIR", tmp_path)
    monkeypatch.setattr(module, "TREE_DIR", tmp_path / "llama.cpp")
    monkeypatch.setattr(module, "STAMP_FILE", tmp_path / "llama.cpp" / ".allama-pin")
    return module


def make_sdist(path: Path, stem: str) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in ((f"{stem}/vendor/llama.cpp/include/llama.h", b"// header\n"),
                           (f"{stem}/llama_cpp/__init__.py", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def write_pin(fetch, sha: str, filename: str = "llama_cpp_python-9.9.9.tar.gz") -> None:
    pin = Path(fetch.VENDOR_DIR) / "llama_cpp.pin"
    pin.write_text(f"package = llama-cpp-python\nversion = 9.9.9\nfilename = {filename}\nsha256 = {sha}\n")
    fetch.PIN_FILE = pin


def test_the_committed_pin_names_the_issue_archive():
    text = (REPO_ROOT / "vendor" / "llama_cpp.pin").read_text()
    assert "version = 0.3.36" in text
    assert "sha256 = 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e" in text


def test_unpacks_only_the_vendored_tree_and_is_idempotent(fetch, tmp_path, capsys):
    archive = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    write_pin(fetch, make_sdist(archive, "llama_cpp_python-9.9.9"))
    assert fetch.main(["--archive", str(archive)]) == 0
    assert (tmp_path / "llama.cpp" / "include" / "llama.h").read_bytes() == b"// header\n"
    assert not (tmp_path / "llama.cpp" / "llama_cpp").exists()
    capsys.readouterr()
    assert fetch.main(["--archive", str(archive)]) == 0
    assert "already holds" in capsys.readouterr().out


def test_hash_mismatch_is_a_clear_error(fetch, tmp_path, capsys):
    archive = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    make_sdist(archive, "llama_cpp_python-9.9.9")
    write_pin(fetch, "0" * 64)
    assert fetch.main(["--archive", str(archive)]) == 1
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err
    assert not (tmp_path / "llama.cpp").exists()


def test_download_failure_is_a_clear_error(fetch, monkeypatch, capsys):
    write_pin(fetch, "0" * 64)

    class Failed:
        returncode = 1
        stderr = "ERROR: No matching distribution found"

    monkeypatch.setattr(fetch.subprocess, "run", lambda *a, **k: Failed())
    assert fetch.main([]) == 1
    err = capsys.readouterr().err
    assert "could not download llama-cpp-python==9.9.9" in err
    assert "No matching distribution" in err


def test_the_build_refuses_to_run_without_the_tree():
    text = (REPO_ROOT / "CMakeLists.txt").read_text()
    assert "Run `python vendor/fetch_llama_cpp.py` first" in text
