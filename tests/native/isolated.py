"""Runs a snippet in a fresh interpreter, so that a native abort fails one test
instead of killing the whole run, and reports the exception it raised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

_HARNESS = """
import json, sys
try:
{body}
except BaseException as exc:
    print(json.dumps({{"type_name": type(exc).__name__, "bases": [c.__name__ for c in type(exc).__mro__],
                      "message": str(exc)}}))
    sys.exit(0)
print(json.dumps({{"type_name": None, "bases": [], "message": ""}}))
"""


@dataclass
class Outcome:
    type_name: str | None
    bases: list[str]
    message: str

    def is_a(self, name: str) -> bool:
        return name in self.bases


def run_isolated(code: str, timeout: float = 120.0) -> Outcome:
    """Executes `code` in a subprocess and returns what it raised (type_name None: nothing)."""
    body = textwrap.indent(textwrap.dedent(code), "    ")
    proc = subprocess.run(
        [sys.executable, "-c", _HARNESS.format(body=body)],
        capture_output=True, text=True, timeout=timeout, env=dict(os.environ),
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"the snippet crashed the interpreter (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    last = proc.stdout.strip().splitlines()[-1]
    return Outcome(**json.loads(last))
