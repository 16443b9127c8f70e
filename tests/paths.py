"""Where the tests find the repository's own files (docs, benchmarks, vendor, examples)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
