"""The first request after load pays nothing the later ones do not: no lazy import on the
way of its first output (anyio's asyncio backend cost the first request ~45 ms)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_streamed_request_imports_nothing_on_the_way_of_its_outputs(llama_f32_path):
    script = textwrap.dedent(f"""
        import asyncio, sys
        from allama import Llama

        llm = Llama({str(llama_f32_path)!r}, n_ctx=128, n_parallel=2, n_threads=1, n_threads_batch=1)

        async def main():
            stream = await llm.create_completion("Once upon a time", max_tokens=4, stream=True)
            before = set(sys.modules)
            async for _chunk in stream:
                pass
            return sorted(set(sys.modules) - before)

        print(asyncio.run(main()))
        llm.close()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_the_context_is_warmed_up_at_load_and_left_empty(llama_f32_path, caplog):
    """One small decode at load (as llama.cpp's tools do) takes the first decode's one-off
    costs off the first request; it leaves no KV and no count behind."""
    import asyncio
    import logging

    from allama import Llama

    with caplog.at_level(logging.DEBUG, logger="allama.engine"):
        llm = Llama(str(llama_f32_path), n_ctx=128, n_parallel=2, n_threads=1, n_threads_batch=1)
    try:
        assert any("warm-up decode of 2 tokens" in r.getMessage() for r in caplog.records)
        ctx = llm._scheduler.ctx
        assert [ctx.seq_pos_max(s) for s in range(2)] == [-1, -1]

        async def main():
            return await llm.create_completion([1, 2, 3, 4], max_tokens=3, ignore_eos=True, temperature=0.0)

        asyncio.run(main())
        assert llm.stats().llama_tokens_evaluated == 4 + 2  # the prompt and two decodes: nothing of the warm-up
    finally:
        llm.close()
