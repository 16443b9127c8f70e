"""allama.compat.llama_cpp mirrors llama-cpp-python's module layout, and install() makes it
importable as `llama_cpp` for libraries that import it themselves."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import pytest

from ..paths import REPO_ROOT

MODULES = [
    "allama.compat.llama_cpp",
    "allama.compat.llama_cpp.llama",
    "allama.compat.llama_cpp.llama_cpp",
    "allama.compat.llama_cpp.llama_chat_format",
    "allama.compat.llama_cpp.llama_grammar",
    "allama.compat.llama_cpp.llama_cache",
    "allama.compat.llama_cpp.llama_tokenizer",
    "allama.compat.llama_cpp.llama_speculative",
    "allama.compat.llama_cpp.llama_types",
    "allama.compat.llama_cpp.llava_cpp",
    "allama.compat.llama_cpp.mtmd_cpp",
    "allama.compat.llama_cpp._internals",
    "allama.compat.llama_cpp.server",
    "allama.compat.llama_cpp.server.app",
    "allama.compat.llama_cpp.server.settings",
]

ENV = {**os.environ, "SKBUILD_EDITABLE_SKIP": "1", "PYTHONUNBUFFERED": "1"}


def run_script(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=REPO_ROOT)


def assert_clean_exit(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    for bad in ("terminate called", "Traceback", "Exception ignored", "Fatal Python error"):
        assert bad not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    assert importlib.import_module(name).__doc__


def test_the_package_holds_what_llama_cpp_python_exports():
    import allama
    import allama.compat.llama_cpp as llama_cpp
    from allama import llama_cpp as low_level
    from allama.sync import Llama

    assert llama_cpp.__version__ == "0.3.36"
    assert llama_cpp.Llama is llama_cpp.llama.Llama is Llama
    for name in ("LlamaGrammar", "LlamaRAMCache", "LlamaDiskCache", "LlamaCache", "LlamaTokenizer", "LlamaState",
                 "LogitsProcessorList", "StoppingCriteriaList", "MinTokensLogitsProcessor"):
        assert getattr(llama_cpp, name) is getattr(allama, name), name
    # the low-level API and the types, at the top level as in llama-cpp-python
    assert llama_cpp.llama_backend_init is low_level.llama_backend_init
    assert llama_cpp.LLAMA_POOLING_TYPE_MEAN == low_level.LLAMA_POOLING_TYPE_MEAN
    assert llama_cpp.ChatCompletionRequestUserMessage is llama_cpp.llama_types.ChatCompletionRequestUserMessage
    assert llama_cpp.llama_cpp is llama_cpp.llama.llama_cpp


def test_submodules_re_export_allama_objects():
    import allama.cache
    import allama.chat
    import allama.grammar
    import allama.server
    import allama.speculative
    import allama.tokenizer
    from allama.compat.llama_cpp import (llama_cache, llama_chat_format, llama_grammar, llama_speculative,
                                         llama_tokenizer)
    from allama.compat.llama_cpp.server import app, settings

    assert llama_cache.LlamaDiskCache is allama.cache.LlamaDiskCache
    assert llama_tokenizer.LlamaHFTokenizer is allama.tokenizer.LlamaHFTokenizer
    assert llama_speculative.LlamaPromptLookupDecoding is allama.speculative.LlamaPromptLookupDecoding
    assert llama_grammar.json_schema_to_gbnf is allama.grammar.json_schema_to_gbnf
    assert llama_chat_format.Jinja2ChatFormatter is allama.chat.Jinja2ChatFormatter
    assert llama_chat_format.format_chatml is allama.chat.get_chat_format("chatml")
    assert llama_chat_format.chatml_function_calling is allama.chat.get_chat_completion_handler(
        "chatml-function-calling")
    assert app.create_app is allama.server.create_app
    assert settings.Settings is allama.server.Settings


def test_mtmd_cpp_says_what_allama_lacks():
    from allama.compat.llama_cpp import mtmd_cpp

    with pytest.raises(AttributeError, match="does not bind llama.cpp's mtmd C API"):
        mtmd_cpp.mtmd_init_from_file  # noqa: B018


def test_install_makes_llama_cpp_resolve_to_allama():
    proc = run_script("""
        import sys
        import allama.compat
        import allama.compat.llama_cpp.llama_grammar as grammar_before  # imported before install()
        package = allama.compat.install()
        assert allama.compat.install() is package and allama.compat.installed()
        import llama_cpp
        import llama_cpp.llama_chat_format as chat_format
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter, format_chatml
        from llama_cpp.llama_types import ChatCompletionRequestUserMessage
        from llama_cpp.server.app import create_app
        from llama_cpp import Llama, LlamaGrammar
        import allama.chat, allama.compat.llama_cpp, allama.compat.llama_cpp.llama_chat_format
        import allama.compat.llama_cpp.server.app, allama.sync
        assert llama_cpp is allama.compat.llama_cpp
        assert chat_format is allama.compat.llama_cpp.llama_chat_format, "one module object, two names"
        assert Jinja2ChatFormatter is allama.chat.Jinja2ChatFormatter
        assert create_app is allama.compat.llama_cpp.server.app.create_app
        assert Llama is allama.sync.Llama
        assert sys.modules["llama_cpp.llama_grammar"] is grammar_before
        try:
            import llama_cpp.no_such_module
        except ModuleNotFoundError:
            pass
        else:
            raise AssertionError("an unknown submodule imported")
        print("ok")
    """)
    assert_clean_exit(proc)
    assert proc.stdout.strip() == "ok"


def test_install_refuses_once_a_real_llama_cpp_is_imported():
    proc = run_script("""
        import sys, types
        sys.modules["llama_cpp"] = types.ModuleType("llama_cpp")  # what importing llama-cpp-python leaves
        import allama.compat
        try:
            allama.compat.install()
        except RuntimeError as exc:
            print(exc)
        else:
            raise AssertionError("install() replaced a real llama_cpp")
        assert not allama.compat.installed()
    """)
    assert_clean_exit(proc)
    assert "a real llama_cpp is already imported" in proc.stdout


def test_a_blocking_completion_through_llama_cpp_exits_cleanly_without_close(llama_f32_path):
    proc = run_script(f"""
        import allama.compat
        allama.compat.install()
        import llama_cpp
        llm = llama_cpp.Llama(model_path={str(llama_f32_path)!r}, n_ctx=64, n_threads=1, n_threads_batch=1,
                              verbose=False)
        out = llm.create_completion("Hello", max_tokens=4, temperature=0.0)
        assert out["object"] == "text_completion" and out["usage"]["completion_tokens"] == 4
        stream = llm.create_completion("Hello", max_tokens=4, temperature=0.0, stream=True)
        assert "".join(c["choices"][0]["text"] for c in stream) == out["choices"][0]["text"]
        print("ok")
    """)
    assert_clean_exit(proc)
    assert proc.stdout.strip() == "ok"


def test_the_server_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "allama.compat.llama_cpp.server", "--help"], capture_output=True,
                          text=True, timeout=120, env=ENV, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--model" in proc.stdout and "--n_ctx" in proc.stdout
