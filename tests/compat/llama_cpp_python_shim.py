"""pytest plugin (`-p tests.compat.llama_cpp_python_shim`) for running llama-cpp-python's own
test files against allama: `llama_cpp` is allama.compat.llama_cpp, `hf_hub_download` returns
the local fixture model standing in for each Hub file (ALLAMA_COMPAT_MODELS, JSON
{"repo_id/filename": path}), and models get one thread (the tests ask for every CPU)."""

from __future__ import annotations

import json
import multiprocessing
import os
from typing import Any

import huggingface_hub

import allama.compat

allama.compat.install()

_MODELS: dict[str, str] = json.loads(os.environ.get("ALLAMA_COMPAT_MODELS", "{}"))


def hf_hub_download(repo_id: str, filename: str, **_: Any) -> str:
    try:
        return _MODELS[f"{repo_id}/{filename}"]
    except KeyError:
        raise FileNotFoundError(f"no local fixture model stands in for {repo_id}/{filename}") from None


huggingface_hub.hf_hub_download = hf_hub_download
multiprocessing.cpu_count = lambda: 1
