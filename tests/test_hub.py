"""Llama.from_pretrained: GGUF files found by glob in a Hugging Face Hub repo, downloaded, loaded.

Tests run offline: a local hub cache in tmp_path is laid out as huggingface_hub keeps one
(models--owner--name/{blobs, refs/main, snapshots/<commit>/...}), and HF_HUB_OFFLINE is
on, so the file list comes from the cached snapshot.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest

from allama import Llama
from allama import sync
from allama.hub import download_model
from allama.testing.model_builder import LlamaConfig, build_llama

hub = pytest.importorskip("huggingface_hub", reason="from_pretrained tests need the `hf` extra (in `test`)")
hub_constants = pytest.importorskip("huggingface_hub.constants")

REPO = "allama-tests/tiny-llama-GGUF"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fill_hub_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """Lays `files` (repo path -> source file) out in `cache` as huggingface_hub does after a
    download of the repo's main branch; returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    for name, source in files.items():
        blob = repo / "blobs" / hashlib.sha256(source.read_bytes()).hexdigest()
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, blob)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


@pytest.fixture(scope="module")
def split_parts(tmp_path_factory) -> list[Path]:
    """A real split model: three GGUF files that llama.cpp loads together from the first."""
    folder = tmp_path_factory.mktemp("split")
    return build_llama(folder / "tiny-llama-Q8.gguf", LlamaConfig(), split_max_tensors=8)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def cache(tmp_path, llama_f32_path, split_parts, offline) -> Path:
    """A hub cache holding REPO: two single-file models, a split model, a projector, a README."""
    readme = tmp_path / "README.md"
    readme.write_text("# tiny llama\n")
    projector = tmp_path / "mmproj.gguf"
    projector.write_bytes(b"GGUF not really a projector")
    files = {
        "tiny-llama-F32.gguf": llama_f32_path,
        "tiny-llama-F16.gguf": llama_f32_path,
        "mmproj-tiny-llama-F16.gguf": projector,
        "README.md": readme,
    }
    files.update({f"Q8/{part.name}": part for part in split_parts})
    root = tmp_path / "hub"
    fill_hub_cache(root, REPO, files)
    return root


@pytest.fixture
def downloads(monkeypatch) -> list[str]:
    """The repo paths that from_pretrained asks huggingface_hub for."""
    asked: list[str] = []
    real = hub.hf_hub_download

    def recording(*args, **kwargs):
        asked.append(kwargs["filename"])
        return real(*args, **kwargs)

    monkeypatch.setattr(hub, "hf_hub_download", recording)
    return asked


@pytest.mark.anyio
async def test_from_pretrained_loads_the_one_file_the_glob_matches(cache, downloads):
    async with await Llama.from_pretrained(REPO, "*F32.gguf", cache_dir=cache, n_ctx=64, n_parallel=1) as llm:
        assert downloads == ["tiny-llama-F32.gguf"]
        assert Path(llm.model_path) == cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / \
            "tiny-llama-F32.gguf"
        assert llm.n_ctx() == 64
        out = await llm.create_completion("Hello", max_tokens=3, temperature=0, ignore_eos=True)
        assert out["usage"]["completion_tokens"] == 3


@pytest.mark.anyio
async def test_from_pretrained_downloads_every_part_of_a_split_model_and_loads_the_first(cache, downloads):
    async with await Llama.from_pretrained(REPO, "Q8/*.gguf", cache_dir=cache, n_ctx=64, n_parallel=1) as llm:
        assert downloads == [f"Q8/tiny-llama-Q8-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
        assert llm.model_path.endswith("tiny-llama-Q8-00001-of-00003.gguf")
        out = await llm.create_completion("Hello", max_tokens=3, temperature=0, ignore_eos=True)
        assert out["usage"]["completion_tokens"] == 3


def test_a_glob_naming_one_part_still_gets_the_whole_split_model(cache, downloads):
    path = download_model(REPO, "*Q8-00002-of-00003.gguf", cache_dir=cache)
    assert path.endswith("Q8/tiny-llama-Q8-00001-of-00003.gguf")
    assert sorted(downloads) == [f"Q8/tiny-llama-Q8-0000{i}-of-00003.gguf" for i in (1, 2, 3)]


def test_additional_files_are_downloaded_beside_the_model(cache, downloads):
    path = download_model(REPO, "tiny-*F16.gguf", additional_files=["mmproj-*", "README.md"], cache_dir=cache)
    assert Path(path).name == "tiny-llama-F16.gguf"
    assert downloads == ["tiny-llama-F16.gguf", "mmproj-tiny-llama-F16.gguf", "README.md"]
    assert (Path(path).parent / "mmproj-tiny-llama-F16.gguf").read_bytes().startswith(b"GGUF")


def test_a_multimodal_handler_takes_its_projector_from_the_hub(cache, downloads):
    from allama.chat import Llava15ChatHandler

    handler = Llava15ChatHandler.from_pretrained(REPO, "mmproj-*.gguf", cache_dir=cache, n_threads=2)
    assert isinstance(handler, Llava15ChatHandler) and handler.n_threads == 2
    assert Path(handler.clip_model_path).name == "mmproj-tiny-llama-F16.gguf"
    assert downloads == ["mmproj-tiny-llama-F16.gguf"]


def test_a_glob_matching_nothing_lists_the_available_files(cache):
    with pytest.raises(ValueError, match=r"no file in allama-tests/tiny-llama-GGUF matches '\*Q4_K_M\*'") as info:
        download_model(REPO, "*Q4_K_M*", cache_dir=cache)
    assert "tiny-llama-F32.gguf" in str(info.value) and "Q8/tiny-llama-Q8-00003-of-00003.gguf" in str(info.value)


def test_a_glob_matching_several_models_is_refused(cache):
    with pytest.raises(ValueError, match=r"several files .* match '\*tiny-llama-F\*'") as info:
        download_model(REPO, "*tiny-llama-F*", cache_dir=cache)
    assert "tiny-llama-F16.gguf" in str(info.value) and "tiny-llama-F32.gguf" in str(info.value)


def test_an_additional_file_glob_matching_nothing_is_refused(cache):
    with pytest.raises(ValueError, match="no file .* matches 'tokenizer.json'"):
        download_model(REPO, "*F32.gguf", additional_files=["tokenizer.json"], cache_dir=cache)


def test_no_filename_means_the_repos_only_gguf_model(tmp_path, llama_f32_path, offline):
    fill_hub_cache(tmp_path, "someone/one-model", {"model.gguf": llama_f32_path, "README.md": llama_f32_path})
    assert download_model("someone/one-model", None, cache_dir=tmp_path).endswith("model.gguf")


def test_a_split_model_missing_a_part_is_refused(tmp_path, split_parts, offline):
    fill_hub_cache(tmp_path, REPO, {p.name: p for p in split_parts[:2]})
    with pytest.raises(ValueError, match=r"lacks parts: \[\"tiny-llama-Q8-00003-of-00003.gguf\"\]"):
        download_model(REPO, "*.gguf", cache_dir=tmp_path)


def test_offline_without_the_repo_in_the_cache_is_a_clear_error(tmp_path, offline):
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        download_model("someone/never-downloaded", "*.gguf", cache_dir=tmp_path)


def test_a_malformed_repo_id_is_a_value_error(cache):
    with pytest.raises(ValueError):
        download_model("not a/valid/repo id", "*.gguf", cache_dir=cache)


def connection_errors() -> list[BaseException]:
    """What an unreachable Hub raises: Python's own, and the HTTP clients' that huggingface_hub uses."""
    errors: list[BaseException] = [ConnectionError("no route to huggingface.co")]
    for client in ("httpx", "httpx2", "requests"):
        module = sys.modules.get(client)
        if module is not None:
            errors.append(module.ConnectError("no route") if hasattr(module, "ConnectError")
                          else module.ConnectionError("no route"))
    return errors


def test_an_unreachable_hub_falls_back_to_the_cached_files(cache, downloads, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    errors = connection_errors()
    assert len(errors) > 1  # huggingface_hub's HTTP client is among them
    for error in errors:
        def unreachable(self, repo_id, **kwargs):
            raise error

        monkeypatch.setattr(hub.HfApi, "list_repo_files", unreachable)
        downloads.clear()
        assert download_model(REPO, "*F32.gguf", cache_dir=cache).endswith("tiny-llama-F32.gguf"), error
        assert downloads == ["tiny-llama-F32.gguf"]


def test_a_missing_repo_on_the_hub_is_not_hidden_by_the_cache(cache, monkeypatch):
    from huggingface_hub.errors import RepositoryNotFoundError

    class NotFound(RepositoryNotFoundError):
        def __init__(self) -> None:  # without the HTTP response the real one is built from
            Exception.__init__(self, "404: no such repo")

    def missing(self, repo_id, **kwargs):
        raise NotFound()

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub.HfApi, "list_repo_files", missing)
    with pytest.raises(RepositoryNotFoundError, match="404"):
        download_model(REPO, "*F32.gguf", cache_dir=cache)


def test_files_in_a_local_dir_are_used_offline(tmp_path, llama_f32_path, offline):
    local = tmp_path / "models"
    local.mkdir()
    shutil.copyfile(llama_f32_path, local / "tiny-llama-F32.gguf")
    path = download_model(REPO, "*.gguf", local_dir=local, local_dir_use_symlinks=False)
    assert Path(path) == local / "tiny-llama-F32.gguf"


def test_sync_from_pretrained_loads_the_model(cache):
    with sync.Llama.from_pretrained(REPO, "*F32.gguf", cache_dir=cache, n_ctx=64, n_parallel=1) as llm:
        assert llm.model_path.endswith("tiny-llama-F32.gguf")
        assert llm.create_completion("Hi", max_tokens=2, temperature=0, ignore_eos=True)["usage"][
            "completion_tokens"] == 2


def test_from_pretrained_names_the_extra_when_huggingface_hub_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"allama\[hf\]"):
        download_model(REPO, "*.gguf")
