"""Running `python -m allama ...` as a user does: a subprocess, with a timeout."""

from __future__ import annotations

import os
import subprocess
import sys

ENV = {**os.environ, "SKBUILD_EDITABLE_SKIP": "1"}


def allama(*args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "allama", *map(str, args)], input=input, capture_output=True,
                          text=True, timeout=timeout, env=ENV)
