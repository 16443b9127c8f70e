"""The process as users run it: scripts that end without close(), leave streams half read,
get Ctrl-C, drop models without closing them, or fork. Each runs in a subprocess with a
timeout; the assertions are on exit status, time and stderr."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ENV = {**os.environ, "SKBUILD_EDITABLE_SKIP": "1", "PYTHONUNBUFFERED": "1"}


def run_script(code: str, timeout: float = 60.0) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=ENV)
    return proc, time.monotonic() - start


def assert_clean_exit(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    for bad in ("terminate called", "Traceback", "Exception ignored", "Fatal Python error"):
        assert bad not in proc.stderr, proc.stderr[-3000:]


def timed_exit(code: str, model: Path) -> float:
    """Runs the script; returns how long it took after printing its last line ('done')."""
    script = "import time\n" + textwrap.dedent(code).replace("MODEL", repr(str(model))) + \
        "\nprint('done', time.monotonic(), flush=True)\n"
    proc, _ = run_script(script)
    end = time.monotonic()
    assert_clean_exit(proc)
    printed = float(proc.stdout.strip().splitlines()[-1].split()[1])
    return end - printed


@pytest.mark.parametrize("case", [
    "sync_no_close", "sync_half_read_stream", "sync_half_read_chat_stream", "async_no_close",
    "async_half_read_stream", "uvloop_no_close", "uvloop_half_read_stream", "sync_session_and_embedding_stream",
    "several_models", "mounted_server_app"])
def test_scripts_that_never_close_exit_promptly(llama_f32_path, case):
    scripts = {
        "sync_no_close": """
            from allama.sync import Llama
            llm = Llama(model_path=MODEL)
            print(llm.create_completion("Hello", max_tokens=8)["choices"][0]["text"])
        """,
        "sync_half_read_stream": """
            from allama.sync import Llama
            llm = Llama(model_path=MODEL)
            print(next(iter(llm.create_completion("Hello", max_tokens=500, ignore_eos=True, stream=True))))
        """,
        "sync_half_read_chat_stream": """
            from allama.sync import Llama
            llm = Llama(model_path=MODEL, chat_format="chatml")
            stream = llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=500, stream=True)
            for i, chunk in enumerate(stream):
                if i == 2:
                    break
            keep = stream  # still referenced at exit
        """,
        "async_no_close": """
            import asyncio
            from allama import Llama
            async def main():
                llm = await Llama.load(MODEL)
                print((await llm.create_completion("Hello", max_tokens=8))["choices"][0]["text"])
            asyncio.run(main())
        """,
        "async_half_read_stream": """
            import asyncio
            from allama import Llama
            streams = []
            async def main():
                llm = await Llama.load(MODEL)
                s = await llm.create_completion("Hello", max_tokens=4000, ignore_eos=True, stream=True)
                streams.append(s)
                async for chunk in s:
                    break
            asyncio.run(main())
        """,
        "sync_session_and_embedding_stream": """
            from allama.sync import Llama
            llm = Llama(model_path=MODEL, embedding=True)
            session = llm.session()
            session.create_completion("Hello", max_tokens=4)
            items = llm.create_embedding(["a b c"] * 8, stream=True)
            next(iter(items))
        """,
        "several_models": """
            import asyncio, threading
            from allama import Llama
            from allama.sync import Llama as SyncLlama
            sync_models = [SyncLlama(model_path=MODEL) for _ in range(2)]
            gens = [m.create_completion("x", max_tokens=300, ignore_eos=True, stream=True) for m in sync_models]
            [next(g) for g in gens]
            async def main():
                models = [await Llama.load(MODEL) for _ in range(2)]
                return [await m.create_completion("x", max_tokens=300, ignore_eos=True, stream=True) for m in models]
            pending = asyncio.run(main())
        """,
        "mounted_server_app": """
            import asyncio, httpx
            from fastapi import FastAPI
            from allama.server import ModelSettings, ServerSettings, create_app
            parent = FastAPI()  # no lifespan passed on: the models load at the first request, never closed
            parent.mount("/llm", create_app(server_settings=ServerSettings(),
                                            model_settings=[ModelSettings(model=MODEL, n_ctx=256)]))
            async def main():
                transport = httpx.ASGITransport(app=parent)
                async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                    for _ in range(200):
                        response = await client.post("/llm/v1/completions", json={"prompt": "hi", "max_tokens": 4})
                        if response.status_code == 200:
                            break
                        await asyncio.sleep(0.05)
                    print(response.status_code)
            asyncio.run(main())
        """,
    }
    for name in ("no_close", "half_read_stream"):  # the same scripts on uvloop (uvicorn[standard]'s loop)
        scripts[f"uvloop_{name}"] = on_uvloop(scripts[f"async_{name}"])
    after = timed_exit(scripts[case], llama_f32_path)
    assert after < 2.5, f"{case}: exited {after:.2f} s after its last line"


def on_uvloop(script: str) -> str:
    """An asyncio.run script, run by uvloop.run instead."""
    converted = script.replace("import asyncio", "import uvloop").replace("asyncio.run(", "uvloop.run(")
    assert "uvloop.run(" in converted and "asyncio" not in converted, converted
    return converted


def _ctrl_c_not_ignored() -> None:
    """In the child, as a shell starts a foreground program: SIGINT not ignored, even when the
    tests run in a background job (whose shell ignores SIGINT; the ignoring survives exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(script: str, wait_for: str, timeout: float = 30.0) -> tuple[int, str, str, float]:
    """Starts the script, sends SIGINT once it prints `wait_for`; (exit status, stdout, stderr,
    seconds from the signal to the exit)."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, preexec_fn=_ctrl_c_not_ignored)
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if wait_for in line or not line:
            break
    time.sleep(0.3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"no exit {timeout} s after SIGINT:\n{err[-2000:]}")
    return proc.returncode, "".join(lines) + out, err, time.monotonic() - sent


def test_ctrl_c_in_a_blocking_call_cancels_it_and_the_model_stays_usable(llama_f32_path):
    code, out, err, took = interrupt(f"""
        import time
        from allama.sync import Llama
        llm = Llama(model_path={str(llama_f32_path)!r}, n_ctx=8192)
        print("calling", flush=True)
        start = time.monotonic()
        try:
            llm.create_completion("Hello", max_tokens=8000, ignore_eos=True)
            print("finished without interruption", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print("stats", llm.stats().active, flush=True)
        print("next", len(llm.create_completion("Hello", max_tokens=4)["choices"][0]["text"]) >= 0, flush=True)
    """, "calling")
    assert code == 0, err
    assert "interrupted" in out and "finished without interruption" not in out
    assert "next True" in out
    assert took < 5, took


def test_ctrl_c_while_iterating_a_sync_stream(llama_f32_path):
    code, out, err, took = interrupt(f"""
        from allama.sync import Llama
        llm = Llama(model_path={str(llama_f32_path)!r}, n_ctx=8192)
        try:
            for i, chunk in enumerate(llm.create_completion("Hi", max_tokens=8000, ignore_eos=True, stream=True)):
                if i == 3:
                    print("streaming", flush=True)
            print("finished without interruption", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print("next", llm.create_completion("Hello", max_tokens=2)["object"], flush=True)
    """, "streaming")
    assert code == 0, err
    assert "interrupted" in out and "next text_completion" in out
    assert took < 5


def test_an_unhandled_ctrl_c_ends_the_process_at_once(llama_f32_path):
    code, out, err, took = interrupt(f"""
        from allama.sync import Llama
        llm = Llama(model_path={str(llama_f32_path)!r}, n_ctx=8192)
        print("calling", flush=True)
        llm.create_completion("Hello", max_tokens=8000, ignore_eos=True)
    """, "calling")
    assert code in (-signal.SIGINT, 128 + signal.SIGINT, 1), (code, err)
    assert "KeyboardInterrupt" in err and "terminate called" not in err
    assert took < 5


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_an_unhandled_ctrl_c_while_reading_an_async_stream_ends_the_process_at_once(llama_f32_path, runner):
    code, out, err, took = interrupt(f"""
        import {runner}
        from allama import Llama
        async def main():
            llm = await Llama.load({str(llama_f32_path)!r}, n_ctx=8192)
            stream = await llm.create_completion("Hello", max_tokens=8000, ignore_eos=True, stream=True)
            chunks = 0
            async for chunk in stream:
                chunks += 1
                if chunks == 3:
                    print("streaming", flush=True)
        {runner}.run(main())
    """, "streaming")
    assert code in (-signal.SIGINT, 128 + signal.SIGINT, 1), (code, err)
    assert "KeyboardInterrupt" in err and "terminate called" not in err
    assert took < 5


def test_models_dropped_without_close_free_their_threads_and_memory(llama_f32_path):
    proc, _ = run_script(f"""
        import gc, threading, resource, asyncio
        from allama import Llama
        from allama.sync import Llama as SyncLlama

        def rss_kb():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))

        def one(i):
            if i % 2:
                llm = SyncLlama(model_path={str(llama_f32_path)!r}, n_ctx=256)
                llm.create_completion("Hello", max_tokens=2)
            else:
                llm = Llama({str(llama_f32_path)!r}, n_ctx=256)
                asyncio.run(llm.create_completion("Hello", max_tokens=2))
            del llm
            gc.collect()

        for i in range(6):
            one(i)
        threads, rss = threading.active_count(), [rss_kb()]
        for i in range(6, 50):
            one(i)
            if i in (27, 49):
                rss.append(rss_kb())
        print(threads, threading.active_count(), *rss)
    """, timeout=240)
    assert_clean_exit(proc)
    before_threads, after_threads, *rss = map(int, proc.stdout.split())
    assert after_threads == before_threads
    # A leak grows RSS in both halves (22 drops each); malloc may take one more arena as the
    # decode threads come and go (a one-time step of about a megabyte), which shows in one half.
    least_growth = min(rss[1] - rss[0], rss[2] - rss[1])
    assert least_growth <= rss[0] * 0.025, rss


def test_a_forked_child_gets_a_clear_error_and_spawn_works(llama_f32_path, tmp_path):
    script = tmp_path / "fork_and_spawn.py"  # spawn re-imports the main module: it must be a file
    script.write_text(textwrap.dedent(f"""
        import multiprocessing as mp
        from allama.sync import Llama

        MODEL = {str(llama_f32_path)!r}

        def in_forked_child(q):
            try:
                llm.create_completion("Hello", max_tokens=2)
                q.put("no error")
            except Exception as exc:
                q.put(type(exc).__name__ + ": " + str(exc))

        def in_spawned_child(q):
            child = Llama(model_path=MODEL)
            q.put(child.create_completion("Hello", max_tokens=2)["object"])

        if __name__ == "__main__":
            llm = Llama(model_path=MODEL)
            llm.create_completion("Hello", max_tokens=2)
            for method, target in [("fork", in_forked_child), ("spawn", in_spawned_child)]:
                ctx = mp.get_context(method)
                q = ctx.Queue()
                p = ctx.Process(target=target, args=(q,))
                p.start()
                print(method, q.get(timeout=60), flush=True)
                p.join(30)
                print(method, "exit", p.exitcode, flush=True)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=ENV)
    assert_clean_exit(proc)
    assert "fork AllamaError: this model was loaded in the parent process" in proc.stdout
    assert "fork exit 0" in proc.stdout
    assert "spawn text_completion" in proc.stdout and "spawn exit 0" in proc.stdout
