"""Finding a GGUF model's files in a Hugging Face Hub repo and downloading them (Llama.from_pretrained).

The file is named by a glob matched against the repo's file list, as llama-cpp-python
does. A split model (`name-00001-of-00003.gguf`, ...) counts as one file: every part is
downloaded and the first is loaded (llama.cpp then opens the rest beside it). In offline
mode (HF_HUB_OFFLINE=1), or when the Hub cannot be reached, the file list comes from
what the local cache (or `local_dir`) already holds.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("allama.hub")

_SPLIT_PART = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")
_REVISION = "main"


def download_model(repo_id: str, filename: str | None, additional_files: Sequence[str] | None = None, *,
                   local_dir: str | os.PathLike[str] | None = None, local_dir_use_symlinks: bool | str = "auto",
                   cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Downloads the files that `filename` (a glob; None: any .gguf) and each of `additional_files`
    match, and returns the local path of the model file to load (a split model's first part).

    Blocking (network); ValueError when a glob matches no file, or more than one model.
    `local_dir_use_symlinks` is accepted for llama-cpp-python's signature: huggingface_hub
    no longer uses it.
    """
    hub = _huggingface_hub()
    hub.utils.validate_repo_id(repo_id)
    files, offline = _repo_files(hub, repo_id, local_dir, cache_dir)
    model_files = _matching_model(files, "*.gguf" if filename is None else filename, repo_id)
    extra = [part for pattern in additional_files or () for part in _matching_model(files, pattern, repo_id)]
    paths = [
        hub.hf_hub_download(repo_id=repo_id, filename=name, revision=_REVISION, cache_dir=cache_dir,
                            local_dir=local_dir, local_files_only=offline)
        for name in model_files + [f for f in extra if f not in model_files]
    ]
    return paths[0]


def _huggingface_hub() -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.constants
        import huggingface_hub.utils
    except ImportError as exc:
        raise ImportError("Llama.from_pretrained needs the huggingface_hub package: pip install 'allama[hf]'") from exc
    return huggingface_hub


def _matching_model(files: list[str], pattern: str, repo_id: str) -> list[str]:
    """The files of the one model that `pattern` matches: one file, or every part of a split model."""
    matches = [f for f in files if fnmatch.fnmatch(f, pattern)]
    if not matches:
        raise ValueError(f"no file in {repo_id} matches {pattern!r}\n\nAvailable files:\n{json.dumps(files)}")
    models = {_split_name(f) or f for f in matches}
    if len(models) > 1:
        raise ValueError(f"several files in {repo_id} match {pattern!r}: {json.dumps(sorted(matches))}; "
                         f"narrow the pattern to one\n\nAvailable files:\n{json.dumps(files)}")
    split = _SPLIT_PART.match(matches[0])
    if split is None:
        return matches
    count = int(split["count"])
    parts = [f"{split['prefix']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
    missing = [p for p in parts if p not in files]
    if missing:
        raise ValueError(f"the split model {split['prefix']} in {repo_id} lacks parts: {json.dumps(missing)}")
    return parts


def _split_name(path: str) -> str | None:
    """What names a split model's parts together ('model-Q4.gguf (3 parts)'), or None."""
    split = _SPLIT_PART.match(path)
    return f"{split['prefix']}.gguf ({int(split['count'])} parts)" if split else None


def _repo_files(hub: Any, repo_id: str, local_dir: str | os.PathLike[str] | None,
                cache_dir: str | os.PathLike[str] | None) -> tuple[list[str], bool]:
    """The repo's file paths, and whether they came from the local copy (offline)."""
    if not hub.constants.HF_HUB_OFFLINE:
        try:
            return list(hub.HfApi().list_repo_files(repo_id, revision=_REVISION)), False
        except Exception as exc:  # noqa: BLE001 - narrowed just below
            if not _is_unreachable(exc):
                raise
            cached = _cached_files(hub, repo_id, local_dir, cache_dir)
            if cached is None:
                raise
            log.warning("the Hugging Face Hub cannot be reached (%s): using the files cached for %s", exc, repo_id)
            return cached, True
    cached = _cached_files(hub, repo_id, local_dir, cache_dir)
    if cached is None:
        where = local_dir if local_dir is not None else (cache_dir or hub.constants.HF_HUB_CACHE)
        raise FileNotFoundError(f"{repo_id} is not in the local Hugging Face cache at {where}, and HF_HUB_OFFLINE "
                                "is set: download it once with the Hub reachable")
    return cached, True


# What HTTP clients raise when a server cannot be reached: huggingface_hub has used
# requests, httpx and httpx2 over its versions. Only clients already imported are looked at.
_UNREACHABLE_ERRORS = {"requests": ("ConnectionError", "Timeout"), "httpx": ("TransportError",),
                       "httpx2": ("TransportError",)}


def _is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the Hub could not be reached (rather than, say, no such repo)."""
    unreachable: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)  # OfflineModeIsEnabled too
    for client, names in _UNREACHABLE_ERRORS.items():
        module = sys.modules.get(client)
        unreachable += tuple(getattr(module, name) for name in names if hasattr(module, name))
    return isinstance(exc, unreachable)


def _cached_files(hub: Any, repo_id: str, local_dir: str | os.PathLike[str] | None,
                  cache_dir: str | os.PathLike[str] | None) -> list[str] | None:
    """The repo's files already on disk: in `local_dir`, or in the cache's snapshot of the
    branch (models--owner--name/refs/main names the snapshot); None when there are none."""
    if local_dir is not None:
        root = Path(local_dir)
    else:
        repo = Path(cache_dir or hub.constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
        try:
            commit = (repo / "refs" / _REVISION).read_text().strip()
        except OSError:
            return None
        root = repo / "snapshots" / commit
    if not root.is_dir():
        return None
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and not p.relative_to(root).parts[0] == ".cache")
    return files or None
