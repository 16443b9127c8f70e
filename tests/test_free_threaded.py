"""On a free-threaded CPython (3.13t) allama keeps the GIL off: its native module declares that
it needs none, and many requests, tokenizing threads and llama.cpp's log callback run at once
in a script that ends without close(). scripts/free_threaded.sh builds such an interpreter and
runs these tests with it (CI does); on a CPython with a GIL there is nothing to test."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not sysconfig.get_config_var("Py_GIL_DISABLED"),
    reason="needs a free-threaded CPython: scripts/free_threaded.sh builds one and runs this module with it")

ENV = {**os.environ, "SKBUILD_EDITABLE_SKIP": "1", "PYTHONUNBUFFERED": "1"}


def run_script(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    # -W error: the warning CPython gives when an extension turns the GIL back on fails the import
    return subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


def test_importing_allama_leaves_the_gil_off() -> None:
    proc = run_script("""
        import sys
        import allama, allama._native, allama.llama_cpp
        print(sys._is_gil_enabled())
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["False"]


def test_concurrent_requests_tokenizers_and_log_callbacks_without_a_gil(llama_f32_path: Path) -> None:
    proc = run_script(f"""
        import asyncio, sys, threading
        from allama import Llama
        import allama.llama_cpp as low

        lines = []
        low.llama_log_set(lambda level, text, user_data: lines.append(text), None)
        llm = Llama({str(llama_f32_path)!r}, n_ctx=1024, n_parallel=8, verbose=False)
        greedy = dict(max_tokens=24, temperature=0.0, ignore_eos=True)

        async def main():
            alone = (await llm.create_completion("Once upon", **greedy))["choices"][0]["text"]
            # 16 requests at once while 4 threads tokenize and load vocabularies (which logs)
            stop = threading.Event()
            counts = []
            text = b"Once upon a time"
            expected = llm.detokenize(llm.tokenize(text))

            def tokenize():
                n = 0
                while not stop.is_set():
                    assert llm.detokenize(llm.tokenize(text)) == expected
                    n += 1
                counts.append(n)

            threads = [threading.Thread(target=tokenize) for _ in range(4)]
            for t in threads:
                t.start()
            loader = threading.Thread(target=lambda: [low.llama_model_load_from_file(
                {str(llama_f32_path)!r}.encode(), low.llama_model_default_params()) for _ in range(3)])
            loader.start()
            results = await asyncio.gather(*(llm.create_completion("Once upon", **greedy) for _ in range(16)))
            loader.join()
            stop.set()
            for t in threads:
                t.join()
            assert all(r["choices"][0]["text"] == alone for r in results)
            assert len(counts) == 4 and min(counts) > 0

        asyncio.run(main())
        low.llama_log_set(None, None)
        print(sys._is_gil_enabled(), len(lines) > 0)
        # no close(): the process must still end
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["False", "True"], proc.stdout + proc.stderr[-2000:]
    for bad in ("Traceback", "Fatal Python error", "terminate called"):
        assert bad not in proc.stderr, proc.stderr[-3000:]
