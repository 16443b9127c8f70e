#!/usr/bin/env python3
"""Obtain the pinned llama.cpp source tree into ``vendor/llama.cpp``.

The tree comes from the PyPI source distribution of llama-cpp-python named in
``vendor/llama_cpp.pin``: the archive is downloaded with pip (source only, no
dependencies), its sha256 is checked against the pin, and the archive's
``vendor/llama.cpp`` folder is unpacked here.  The same archive's ``llama_cpp/``
and ``tests/`` folders go to ``vendor/llama_cpp_python/``: the reference the
compatibility layer (allama.compat) is tested against.  Run it once before
building; it does nothing when both trees are present and match the pin, and
fetches only the missing or outdated one otherwise.

Usage: python vendor/fetch_llama_cpp.py [--force] [--archive PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent
PIN_FILE = VENDOR_DIR / "llama_cpp.pin"
TREE_DIR = VENDOR_DIR / "llama.cpp"
STAMP_FILE = TREE_DIR / ".allama-pin"
# llama-cpp-python's own package and test suite (tests/compat runs that suite against allama.compat)
PACKAGE_DIR = VENDOR_DIR / "llama_cpp_python"
PACKAGE_STAMP_FILE = PACKAGE_DIR / ".allama-pin"
PACKAGE_FOLDERS = ("llama_cpp", "tests")


class FetchError(RuntimeError):
    """The tree could not be obtained; the message says why and what to do."""


def read_pin() -> dict[str, str]:
    pin: dict[str, str] = {}
    for line in PIN_FILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        pin[key.strip()] = value.strip()
    for key in ("package", "version", "filename", "sha256"):
        if key not in pin:
            raise FetchError(f"{PIN_FILE} lacks the key {key!r}")
    return pin


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(pin: dict[str, str], dest: Path) -> Path:
    requirement = f"{pin['package']}=={pin['version']}"
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps",
        "--no-binary", pin["package"], "--no-build-isolation",
        "--dest", str(dest), requirement,
    ]
    print(f"fetch_llama_cpp: downloading {requirement} (source distribution)", flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True)
    archive = dest / pin["filename"]
    if result.returncode != 0 and not archive.exists():
        raise FetchError(
            f"pip could not download {requirement}:\n{result.stderr.strip()}\n"
            "Check the network access to PyPI, or pass --archive with a local copy."
        )
    if not archive.exists():
        raise FetchError(f"pip ran but {pin['filename']} is not in {dest}")
    return archive


def _extract(tar: tarfile.TarFile, archive: Path, prefix: str, dest: Path) -> None:
    """Extracts the archive's members under `prefix` into `dest`, the prefix cut off."""
    members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
    if not members:
        raise FetchError(f"{archive.name} holds no {prefix!r} folder")
    for member in members:
        member.name = member.name[len(prefix):]
        if not member.name:
            continue
        tar.extract(member, dest, filter="data")


def _install(staging: Path, dest: Path, stamp: Path, pin: dict[str, str]) -> None:
    """Stamps the staged tree with the pin and moves it to `dest`, replacing what was there."""
    staging.chmod(0o755)  # mkdtemp's folder is private; the tree is not
    (staging / stamp.name).write_text(f"{pin['version']} {pin['sha256']}\n")
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)


def unpack_tree(archive: Path, pin: dict[str, str]) -> None:
    stem = pin["filename"].removesuffix(".tar.gz")
    staging = Path(tempfile.mkdtemp(prefix="llama.cpp-", dir=VENDOR_DIR))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            _extract(tar, archive, f"{stem}/vendor/llama.cpp/", staging)
        # The sdist's tree carries a dangling git link from its own checkout.
        gitlink = staging / ".git"
        if gitlink.is_file():
            gitlink.unlink()
        _install(staging, TREE_DIR, STAMP_FILE, pin)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def unpack_package(archive: Path, pin: dict[str, str]) -> None:
    """llama-cpp-python's `llama_cpp/` and `tests/` folders into PACKAGE_DIR."""
    stem = pin["filename"].removesuffix(".tar.gz")
    staging = Path(tempfile.mkdtemp(prefix=f"{PACKAGE_DIR.name}-", dir=VENDOR_DIR))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for folder in PACKAGE_FOLDERS:
                _extract(tar, archive, f"{stem}/{folder}/", staging / folder)
        _install(staging, PACKAGE_DIR, PACKAGE_STAMP_FILE, pin)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _stamp_matches(stamp: Path, pin: dict[str, str]) -> bool:
    return stamp.exists() and stamp.read_text().split() == [pin["version"], pin["sha256"]]


def tree_matches(pin: dict[str, str]) -> bool:
    return _stamp_matches(STAMP_FILE, pin)


def package_matches(pin: dict[str, str]) -> bool:
    return _stamp_matches(PACKAGE_STAMP_FILE, pin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="fetch again even if the trees are present")
    parser.add_argument("--archive", type=Path, help="use this local sdist instead of downloading")
    args = parser.parse_args(argv)
    try:
        pin = read_pin()
        need_tree = args.force or not tree_matches(pin)
        need_package = args.force or not package_matches(pin)
        if not (need_tree or need_package):
            print(f"fetch_llama_cpp: {TREE_DIR} already holds llama-cpp-python {pin['version']}'s tree, "
                  f"and {PACKAGE_DIR} its package and tests")
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            archive = args.archive or download(pin, Path(tmp))
            actual = sha256_of(archive)
            if actual != pin["sha256"]:
                raise FetchError(
                    f"sha256 mismatch for {archive.name}: expected {pin['sha256']}, got {actual}"
                )
            if need_tree:
                unpack_tree(archive, pin)
                print(f"fetch_llama_cpp: unpacked llama.cpp into {TREE_DIR}")
            if need_package:
                unpack_package(archive, pin)
                print(f"fetch_llama_cpp: unpacked llama-cpp-python's package and tests into {PACKAGE_DIR}")
        return 0
    except FetchError as exc:
        print(f"fetch_llama_cpp: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
