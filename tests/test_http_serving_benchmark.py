"""The HTTP serving benchmark runs at tiny scale against allama's server (a smoke test, not a timing)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from .paths import REPO_ROOT


def _server_import_error() -> str | None:
    try:
        importlib.import_module("allama.server")
    except ImportError as exc:
        return str(exc)
    return None


SERVER_IMPORT_ERROR = _server_import_error()


@pytest.mark.skipif(SERVER_IMPORT_ERROR is not None,
                    reason=f"allama.server cannot be imported yet ({SERVER_IMPORT_ERROR}): nothing to benchmark")
def test_http_serving_benchmark_smoke(tmp_path):
    run = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "http_serving.py"), "--smoke"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| allama | 1 |" in run.stdout and "| allama | 2 |" in run.stdout
    assert "unavailable" not in run.stdout
