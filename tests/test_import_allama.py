"""`import allama` leaves the chat package (Jinja2, the chat formats and handlers) unloaded
until something uses it, and every public name is still there."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_import_allama_loads_neither_the_chat_package_nor_jinja2():
    loaded = run("""
        import sys
        import allama
        print(sorted(m for m in sys.modules if m.startswith(("allama.chat", "jinja2"))))
    """)
    assert loaded == "[]"


def test_the_chat_package_and_every_public_name_are_there_after_a_bare_import():
    out = run("""
        import sys
        import allama
        assert all(getattr(allama, name) is not None for name in allama.__all__)
        formats = allama.chat.list_chat_formats()
        assert "jinja2" in sys.modules and all(getattr(allama.chat, n) is not None for n in allama.chat.__all__)
        print("chatml" in formats)
    """)
    assert out == "True"
