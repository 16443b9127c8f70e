"""The soak benchmark at CI scale: under a minute of mixed requests against `allama serve`,
a fifth of them abandoned mid-stream or before the response, leaves no 5xx, no stuck
request, no leaked sequence and no memory growth behind (benchmarks/soak.py's criteria)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from .paths import REPO_ROOT


def test_soak_of_mixed_and_abandoned_requests_leaves_nothing_behind(llama_f32_path, tmp_path):
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "soak.py"), "--model", str(llama_f32_path),
         "--seconds", "45", "--warmup", "300", "--clients", "16", "--stuck-after", "30", "--log-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "SKBUILD_EDITABLE_SKIP": "1"})
    took = time.monotonic() - start
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    abandoned = re.search(r"requests \(\d+ warm-up\), \d+ clients, (\d+) abandoned", run.stdout)
    assert abandoned and int(abandoned.group(1)) > 0, run.stdout[-3000:]
    for kind in ("completion", "completion-stream", "chat", "chat-stream", "embedding"):
        assert f"| {kind} |" in run.stdout
    assert took < 60, f"the CI soak took {took:.0f} s"
