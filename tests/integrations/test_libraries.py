"""Libraries built on llama-cpp-python, unchanged, on allama through `allama.compat.install()`:
LangChain (LlamaCpp, ChatLlamaCpp, LlamaCppEmbeddings), LlamaIndex (LlamaCPP) and Outlines
(JSON-schema-constrained generation). Each runs as a user's script in its own process (install()
changes `sys.modules` for the whole process), which must end by itself, promptly, with status 0.

The libraries are in the `integrations` extra; where one is missing the test skips, unless
ALLAMA_REQUIRE_INTEGRATIONS=1 (set by .ci/run), where a missing library is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ..paths import REPO_ROOT


def _needs(module: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing (llama_index without its llms)
        found = False
    if not found:
        if os.environ.get("ALLAMA_REQUIRE_INTEGRATIONS") == "1":
            pytest.fail(f"{module} is not installed, and ALLAMA_REQUIRE_INTEGRATIONS=1 requires it")
        pytest.skip(f"{module} is not installed: pip install -e '.[integrations]'")


def run_script(body: str, model: Path, timeout: float = 180) -> dict:
    """Runs `body` after `allama.compat.install()` in a fresh interpreter, with MODEL set;
    the script prints one JSON line last, which is returned."""
    script = "import allama.compat\nallama.compat.install()\n" + textwrap.dedent(body)
    env = dict(os.environ, SKBUILD_EDITABLE_SKIP="1", MODEL=str(model), TOKENIZERS_PARALLELISM="false")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO_ROOT)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert elapsed < timeout
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_langchain_llamacpp_completes_streams_and_counts_tokens(llama_f32_path):
    _needs("langchain_community")
    out = run_script("""
        import json, llama_cpp
        from langchain_community.llms import LlamaCpp
        llm = LlamaCpp(model_path=__import__("os").environ["MODEL"], n_ctx=256, max_tokens=8, temperature=0,
                       n_threads=1, verbose=False)
        assert type(llm.client).__module__.startswith("allama"), type(llm.client)
        text = llm.invoke("The river")
        streamed = "".join(llm.stream("The river"))
        print(json.dumps({"text": text, "streamed": streamed, "n": llm.get_num_tokens("one two three"),
                          "module": llama_cpp.__name__}))
    """, llama_f32_path)
    assert out["module"] == "allama.compat.llama_cpp"
    assert out["text"] and out["text"] == out["streamed"]
    assert out["n"] >= 3


def test_langchain_chat_llamacpp_answers_messages(llama_f32_path):
    _needs("langchain_community")
    out = run_script("""
        import json
        from langchain_community.chat_models import ChatLlamaCpp
        from langchain_core.messages import HumanMessage, SystemMessage
        chat = ChatLlamaCpp(model_path=__import__("os").environ["MODEL"], n_ctx=256, max_tokens=8, temperature=0,
                            n_threads=1, verbose=False)
        reply = chat.invoke([SystemMessage(content="Be brief."), HumanMessage(content="Hello")])
        chunks = [c.content for c in chat.stream([HumanMessage(content="Hello")])]
        print(json.dumps({"reply": reply.content, "chunks": len(chunks)}))
    """, llama_f32_path)
    assert isinstance(out["reply"], str) and out["chunks"] >= 1


def test_langchain_embeddings_embed_documents_and_queries(bert_path):
    # a model that pools (BERT, mean): one vector per text, as with llama-cpp-python
    _needs("langchain_community")
    out = run_script("""
        import json
        from langchain_community.embeddings import LlamaCppEmbeddings
        emb = LlamaCppEmbeddings(model_path=__import__("os").environ["MODEL"], n_ctx=256, n_threads=1, verbose=False)
        docs = emb.embed_documents(["a cat", "a dog"])
        query = emb.embed_query("a cat")
        print(json.dumps({"docs": docs, "query": query}))
    """, bert_path)
    assert len(out["docs"]) == 2 and len(out["docs"][0]) == len(out["query"]) > 0
    assert out["docs"][0] == pytest.approx(out["query"], abs=1e-4)  # the same text, the same vector


def test_llama_index_llamacpp_completes_and_streams(llama_f32_path):
    _needs("llama_index.llms.llama_cpp")
    out = run_script("""
        import json, os
        from llama_index.llms.llama_cpp import LlamaCPP
        llm = LlamaCPP(model_path=os.environ["MODEL"], temperature=0, max_new_tokens=8, context_window=256,
                       model_kwargs={"n_threads": 1}, verbose=False)
        whole = llm.complete("The river").text
        streamed = "".join(r.delta for r in llm.stream_complete("The river"))
        print(json.dumps({"whole": whole, "streamed": streamed, "window": llm.metadata.context_window}))
    """, llama_f32_path)
    assert out["whole"] and out["whole"] == out["streamed"]
    assert out["window"] == 256


def test_outlines_generates_json_that_matches_the_schema(llama_f32_path):
    _needs("outlines")
    out = run_script("""
        import json, os
        import outlines
        from llama_cpp import Llama
        schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
                                                   "count": {"type": "integer"}},
                  "required": ["answer", "count"], "additionalProperties": False}
        model = outlines.from_llamacpp(Llama(os.environ["MODEL"], n_ctx=512, n_threads=1, verbose=False))
        text = model("Answer in JSON:", outlines.json_schema(schema), max_tokens=64, temperature=0.0)
        print(json.dumps({"text": text}))
    """, llama_f32_path)
    value = json.loads(out["text"])
    # (Outlines' own schema-to-regex ignores integer bounds, so the schema has none)
    assert value["answer"] in ("yes", "no") and isinstance(value["count"], int) and set(value) == {"answer", "count"}
