"""vendor/fetch_llama_cpp.py: pin checking, idempotence and clear failures."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from .paths import REPO_ROOT


@pytest.fixture()
def fetch(tmp_path, monkeypatch):
    """The script's module, pointed at a scratch vendor folder."""
    spec = importlib.util.spec_from_file_location("fetch_llama_cpp", REPO_ROOT / "vendor" / "fetch_llama_cpp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "VENDOR_DIR", tmp_path)
    monkeypatch.setattr(module, "TREE_DIR", tmp_path / "llama.cpp")
    monkeypatch.setattr(module, "STAMP_FILE", tmp_path / "llama.cpp" / ".allama-pin")
    monkeypatch.setattr(module, "PACKAGE_DIR", tmp_path / "llama_cpp_python")
    monkeypatch.setattr(module, "PACKAGE_STAMP_FILE", tmp_path / "llama_cpp_python" / ".allama-pin")
    return module


def make_sdist(path: Path, stem: str) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in ((f"{stem}/vendor/llama.cpp/include/llama.h", b"// header\n"),
                           (f"{stem}/llama_cpp/__init__.py", b"# package\n"),
                           (f"{stem}/tests/test_llama.py", b"# tests\n"),
                           (f"{stem}/setup.cfg", b"")):
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
    assert not (tmp_path / "llama.cpp" / "tests").exists()
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


def test_unpacks_the_python_package_and_its_tests_beside_the_tree(fetch, tmp_path):
    archive = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    sha = make_sdist(archive, "llama_cpp_python-9.9.9")
    write_pin(fetch, sha)
    assert fetch.main(["--archive", str(archive)]) == 0
    package = tmp_path / "llama_cpp_python"
    assert (package / "llama_cpp" / "__init__.py").read_bytes() == b"# package\n"
    assert (package / "tests" / "test_llama.py").read_bytes() == b"# tests\n"
    assert sorted(p.name for p in package.iterdir()) == [".allama-pin", "llama_cpp", "tests"]
    assert (package / ".allama-pin").read_text().split() == ["9.9.9", sha]
    assert not list(tmp_path.glob("llama_cpp_python-*/")), "no staging folder is left behind"


def test_an_existing_tree_gets_the_package_on_the_next_run(fetch, tmp_path, capsys):
    """A checkout fetched before the package folder existed gets it without --force, and its
    llama.cpp tree is left alone."""
    archive = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    write_pin(fetch, make_sdist(archive, "llama_cpp_python-9.9.9"))
    assert fetch.main(["--archive", str(archive)]) == 0
    shutil.rmtree(tmp_path / "llama_cpp_python")
    marker = tmp_path / "llama.cpp" / "local-build-file"
    marker.write_text("kept")
    capsys.readouterr()
    assert fetch.main(["--archive", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "llama_cpp_python" in out and "unpacked llama.cpp" not in out
    assert marker.exists()
    assert (tmp_path / "llama_cpp_python" / "tests" / "test_llama.py").exists()


def test_a_new_pin_refreshes_the_package(fetch, tmp_path):
    old = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    write_pin(fetch, make_sdist(old, "llama_cpp_python-9.9.9"))
    assert fetch.main(["--archive", str(old)]) == 0
    stale = tmp_path / "llama_cpp_python" / "tests" / "test_removed_upstream.py"
    stale.write_text("")
    new = tmp_path / "llama_cpp_python-9.9.10.tar.gz"
    sha = make_sdist(new, "llama_cpp_python-9.9.10")
    (Path(fetch.VENDOR_DIR) / "llama_cpp.pin").write_text(
        f"package = llama-cpp-python\nversion = 9.9.10\nfilename = {new.name}\nsha256 = {sha}\n")
    assert fetch.main(["--archive", str(new)]) == 0
    assert not stale.exists()
    assert (tmp_path / "llama_cpp_python" / ".allama-pin").read_text().split() == ["9.9.10", sha]
    assert (tmp_path / "llama.cpp" / ".allama-pin").read_text().split() == ["9.9.10", sha]


def test_an_archive_without_the_tests_folder_is_a_clear_error(fetch, tmp_path, capsys):
    archive = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("llama_cpp_python-9.9.9/vendor/llama.cpp/include/llama.h",
                     "llama_cpp_python-9.9.9/llama_cpp/__init__.py"):
            info = tarfile.TarInfo(name)
            tar.addfile(info, io.BytesIO(b""))
    archive.write_bytes(buf.getvalue())
    write_pin(fetch, hashlib.sha256(buf.getvalue()).hexdigest())
    assert fetch.main(["--archive", str(archive)]) == 1
    assert "holds no 'llama_cpp_python-9.9.9/tests/' folder" in capsys.readouterr().err
    assert not (tmp_path / "llama_cpp_python").exists()
    assert not list(tmp_path.glob("llama_cpp_python-*/"))
