"""The documentation site builds with `mkdocs build --strict` (any warning fails it: a broken
link, a docstring mkdocstrings cannot read), and its API reference covers the async Llama.

Needs the `docs` extra; without it the test is skipped, unless ALLAMA_REQUIRE_DOCS=1 (CI) makes
a missing mkdocs a failure."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from ..paths import REPO_ROOT

NEEDED = ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "material", "griffe_pydantic", "pydantic_settings")


def missing_packages() -> list[str]:
    missing = []
    for name in NEEDED:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if missing := missing_packages():
        message = f"the docs extra is not installed (missing {', '.join(missing)}): pip install '.[docs]'"
        if os.environ.get("ALLAMA_REQUIRE_DOCS") == "1":
            pytest.fail(message + " (ALLAMA_REQUIRE_DOCS=1)")
        pytest.skip(message)
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def test_the_site_builds_strictly(site):
    assert (site / "quickstart" / "index.html").exists()


def test_every_docs_page_is_in_the_site(site):
    missing = [p.name for p in (REPO_ROOT / "docs").glob("*.md") if not (site / p.stem / "index.html").exists()]
    assert not missing, missing


def test_the_api_reference_documents_llama_create_completion(site):
    page = (site / "api" / "llama" / "index.html").read_text()
    assert 'id="allama.Llama.create_completion"' in page
    assert "create_chat_completion" in page and "create_embedding" in page


def test_the_api_reference_lists_the_server_settings_fields(site):
    page = (site / "api" / "server" / "index.html").read_text()
    for name in ("ServerSettings", "ModelSettings", "n_parallel", "api_key"):
        assert re.search(rf"\b{name}\b", page), name
