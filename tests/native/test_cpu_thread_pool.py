"""A context's CPU worker threads: made once, the same results from any calling thread, safe
after set_threads() and in a child made by fork()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from allama import _native

from ..native_context import make_context

TOKENS = [1, 15043, 29892, 920, 526, 366, 29973, 306]


def _threads() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")}


def _last_logits(ctx: _native.Context) -> np.ndarray:
    ctx.seq_rm(0)
    batch = _native.Batch(len(TOKENS))
    batch.add_tokens(TOKENS, 0, 0, True)
    ctx.decode(batch)
    step = _native.Batch(1)
    step.add(29889, len(TOKENS), 0, True)
    ctx.decode(step)
    return ctx.logits(0).copy()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="counts threads through Linux's /proc")
def test_workers_are_made_with_the_context_and_kept_across_decodes(llama_model):
    before = _threads()
    ctx = make_context(llama_model, n_threads=3, n_threads_batch=3)
    workers = _threads() - before
    assert len(workers) == 2  # the thread that calls decode is the third
    for _ in range(5):
        _last_logits(ctx)
    assert _threads() - before == workers  # no thread started or ended per decode
    ctx.close()
    assert not (_threads() & workers)  # close() joins them


def test_decode_gives_the_same_logits_from_any_thread(llama_model):
    ctx = make_context(llama_model, n_threads=2, n_threads_batch=2, type_k=0, type_v=0, flash_attn_type=0)
    expected = _last_logits(ctx)
    results: list[np.ndarray] = []
    for _ in range(3):  # a new caller each time, as the engine's decode thread is
        thread = threading.Thread(target=lambda: results.append(_last_logits(ctx)))
        thread.start()
        thread.join()
    results.append(_last_logits(ctx))
    for got in results:
        np.testing.assert_array_equal(got, expected)


def test_set_threads_remakes_the_pools_and_decodes_alike(llama_model):
    ctx = make_context(llama_model, n_threads=2, n_threads_batch=2, type_k=0, type_v=0, flash_attn_type=0)
    expected = _last_logits(ctx)
    for n, n_batch in ((1, 3), (3, 1), (2, 2), (4, 2)):
        ctx.set_threads(n, n_batch)
        assert (ctx.n_threads, ctx.n_threads_batch) == (n, n_batch)
        np.testing.assert_allclose(_last_logits(ctx), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        ctx.set_threads(0, 2)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_a_forked_child_decodes_without_the_parents_workers(llama_f32_path):
    # The child has none of the parent's worker threads: waiting for them would hang it.
    script = textwrap.dedent(f"""
        import os, sys
        import numpy as np
        from allama import _native
        model = _native.Model.load({str(llama_f32_path)!r}, _native.ModelParams())
        params = _native.ContextParams()
        params.n_ctx, params.n_threads, params.n_threads_batch = 256, 2, 2
        ctx = _native.Context(model, params)
        def run():
            ctx.seq_rm(0)
            batch = _native.Batch(4)
            batch.add_tokens([1, 2, 3, 4], 0, 0, True)
            ctx.decode(batch)
            return ctx.logits(3).copy()
        parent = run()
        pid = os.fork()
        if pid == 0:
            child = run()
            os._exit(0 if np.allclose(child, parent, atol=1e-4) else 3)
        _, status = os.waitpid(pid, 0)
        ctx.close()
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads thread signal masks from Linux's /proc")
def test_workers_never_take_ctrl_c_from_the_main_thread(llama_model):
    # A SIGINT the kernel hands to a worker would leave a main thread that sleeps or waits in
    # readline unaware of Ctrl-C: the workers block it (and SIGTERM), whoever makes the context.
    before = _threads()
    ctx = make_context(llama_model, n_threads=3, n_threads_batch=2)
    workers = _threads() - before
    assert len(workers) == 3  # two for single tokens, one for batches
    for tid in workers:
        status = Path(f"/proc/self/task/{tid}/status").read_text()
        blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
        assert blocked & (1 << (signal.SIGINT - 1)) and blocked & (1 << (signal.SIGTERM - 1)), hex(blocked)
    main = Path(f"/proc/self/task/{threading.get_native_id()}/status").read_text()
    main_blocked = int(next(line for line in main.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
    assert not main_blocked & (1 << (signal.SIGINT - 1))  # the caller's own mask is as it was
    ctx.close()
