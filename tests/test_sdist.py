"""The sdist carries the llama.cpp tree the build needs, and nothing bulky beside."""

from __future__ import annotations

import os
import tarfile

from .paths import REPO_ROOT


def test_sdist_ships_the_llama_cpp_tree(tmp_path, monkeypatch):
    from scikit_build_core.build import build_sdist

    monkeypatch.chdir(REPO_ROOT)
    name = build_sdist(str(tmp_path))
    archive = tmp_path / name
    with tarfile.open(archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("vendor/llama.cpp/CMakeLists.txt", "vendor/llama.cpp/include/llama.h",
                   "vendor/llama.cpp/ggml/CMakeLists.txt", "vendor/llama.cpp/src/llama.cpp",
                   "vendor/llama.cpp/tools/mtmd/mtmd.h", "vendor/llama.cpp/vendor/stb/stb_image.h",
                   "vendor/llama.cpp/LICENSE", "src_native/module.cpp", "CMakeLists.txt"):
        assert needed in names, needed
    assert not any(n.startswith(("vendor/llama.cpp/models/", "vendor/llama.cpp/docs/", "build/")) for n in names)
    assert os.path.getsize(archive) < 20 * 1024 * 1024
