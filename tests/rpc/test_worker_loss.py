"""An RPC worker that goes away: at load time a clear ModelLoadError; mid-stream every request
on the model ends with WorkerLostError (no hang, no abort of the process), later ones fail at
once, and the model says which worker it lost. Run as scripts in subprocesses, as users would."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from allama import Llama
from allama.errors import ModelLoadError

from .workers import ENV, free_port, hosts, worker

STREAMS = 4

SCRIPT = """
import asyncio, json, os, signal, subprocess, sys, time
from allama import Llama
from allama.errors import WorkerLostError

async def read(stream, first_chunks):
    n = 0
    try:
        async for _ in stream:
            n += 1
            if n == 3:
                first_chunks.release()
        return {"chunks": n, "error": None}
    except WorkerLostError as exc:
        return {"chunks": n, "error": str(exc), "at": time.monotonic()}

async def main():
    llm = Llama(MODEL, rpc_servers=WORKERS, n_gpu_layers=-1, n_ctx=4096, n_parallel=STREAMS, n_threads=1)
    first_chunks = asyncio.Semaphore(0)
    streams = [await llm.create_completion(f"Story {i}:", max_tokens=4000, ignore_eos=True, stream=True)
               for i in range(STREAMS)]
    readers = [asyncio.create_task(read(s, first_chunks)) for s in streams]
    for _ in range(STREAMS):
        await first_chunks.acquire()  # every stream is under way
    LOSE_WORKER
    killed = time.monotonic()
    results = await asyncio.gather(*readers)
    later = time.monotonic()
    try:
        await llm.create_completion("After", max_tokens=4)
        after = None
    except WorkerLostError as exc:
        after = str(exc)
    print(json.dumps({"results": results, "killed": killed, "after": after, "after_took": time.monotonic() - later,
                      "lost": llm.model.lost_worker}), flush=True)
    # no close(): the process must still end promptly

asyncio.run(main())
"""


@pytest.mark.parametrize(("host_kind", "loss", "within"), [
    ("loopback", "killed", 10), ("netns", "killed", 10),
    ("netns", "cut off", 30),  # no FIN, no RST: silence, until TCP's user timeout (15 s) gives up
])
def test_a_worker_lost_mid_stream_ends_every_stream_with_worker_lost(llama_f32_path: Path, host_kind: str,
                                                                     loss: str, within: float, tmp_path: Path) -> None:
    with hosts(host_kind, 2) as (host_a, host_b), worker(host_a, tmp_path) as a, worker(host_b, tmp_path) as b:
        action = (f"os.kill({b.process.pid}, signal.SIGKILL)" if loss == "killed" else
                  f"subprocess.run(['ip', 'link', 'set', {host_b.link!r}, 'down'], check=True)")
        code = (SCRIPT.replace("MODEL", repr(str(llama_f32_path))).replace("WORKERS", repr([a.endpoint, b.endpoint]))
                .replace("STREAMS", str(STREAMS)).replace("LOSE_WORKER", action))
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=120, env=ENV)
        took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    for bad in ("Traceback", "GGML_ASSERT", "Fatal Python error", "terminate called"):
        assert bad not in proc.stderr, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for result in report["results"]:
        assert result["error"] is not None, result  # no stream ran to its 4,000 tokens
        assert b.endpoint in result["error"]
        assert result["at"] - report["killed"] < within
    assert report["after"] is not None and b.endpoint in report["after"]
    assert report["after_took"] < 1
    assert b.endpoint in report["lost"]
    assert took < 60 + within


def test_an_unreachable_worker_is_a_model_load_error(llama_f32_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(ModelLoadError, match=f"{nobody}.*(unreachable|refused)"):
        Llama(str(llama_f32_path), rpc_servers=[nobody], n_gpu_layers=-1)


def test_a_worker_on_an_unreachable_host_is_a_model_load_error(llama_f32_path: Path, tmp_path: Path) -> None:
    """A host that is gone (its link is down), not one that refuses the connection."""
    with hosts("netns", 1) as (host,), worker(host, tmp_path) as w:
        subprocess.run(["ip", "link", "set", host.link, "down"], check=True, timeout=30)
        started = time.monotonic()
        with pytest.raises(ModelLoadError, match=w.endpoint):
            Llama(str(llama_f32_path), rpc_servers=[w.endpoint], n_gpu_layers=-1)
        assert time.monotonic() - started < 30

