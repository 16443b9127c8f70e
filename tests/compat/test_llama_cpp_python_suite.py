"""llama-cpp-python's own test suite (vendor/llama_cpp_python/tests, unpacked by
vendor/fetch_llama_cpp.py) run against allama.compat.llama_cpp.

The files run unchanged in a pytest subprocess (cwd: the repository root, as their relative
vocab path expects) with tests/compat/llama_cpp_python_shim.py loaded first: `llama_cpp` is
allama's compatibility package, and each Hugging Face Hub model the suite downloads is
replaced by the closest tiny fixture model (random weights, real vocabulary). Every test must
pass except those in EXPECTED_FAILURES, each with its reason; a listed test that starts
passing fails here too, so that the list stays true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from ..paths import REPO_ROOT

SUITE = REPO_ROOT / "vendor" / "llama_cpp_python" / "tests"

# Hub file -> the fixture standing in for it: a tiny model of the same kind
HUB_FIXTURES = {
    "lmstudio-community/Qwen3.5-0.8B-GGUF/Qwen3.5-0.8B-Q8_0.gguf": "qwen3",         # Qwen-family transformer
    "ggml-org/models/tinyllamas/stories15M-q4_0.gguf": "llama",                      # tiny llama transformer
    "CompendiumLabs/bge-small-en-v1.5-gguf/bge-small-en-v1.5-q4_k_m.gguf": "bert",   # BERT embedder
    "QuantFactory/mamba-130m-hf-GGUF/mamba-130m-hf.Q2_K.gguf": "mamba",              # pure recurrent
    "tiiuae/Falcon-H1-Tiny-90M-Instruct-GGUF/Falcon-H1-Tiny-90M-Instruct-Q2_K.gguf": "lfm2",  # hybrid
}

EXPECTED_PASSES = [
    "test_llama.py::test_llama_cpp_version",
    "test_llama.py::test_recurrent_model_prompt_cache_reset",
    "test_llama.py::test_hybrid_model_prompt_cache_reset",
    "test_llama.py::test_exact_cached_prompt_reuse_matches_fresh[llama_cpp_transformer_model_path-False-False]",
    "test_llama.py::test_loaded_exact_cached_prompt_reuse_matches_fresh[llama_cpp_transformer_model_path-False-False]",
    "test_llama.py::test_shorter_prompt_prefix_reuse_matches_fresh[llama_cpp_transformer_model_path-False-False]",
    "test_llama.py::test_real_llama_embeddings",
    "test_llama.py::test_exact_cached_prompt_reuse_matches_fresh[llama_cpp_recurrent_model_path-True-False]",
    "test_llama.py::test_exact_cached_prompt_reuse_matches_fresh[llama_cpp_hybrid_model_path-False-True]",
    "test_llama.py::test_loaded_exact_cached_prompt_reuse_matches_fresh[llama_cpp_recurrent_model_path-True-False]",
    "test_llama.py::test_loaded_exact_cached_prompt_reuse_matches_fresh[llama_cpp_hybrid_model_path-False-True]",
    "test_llama.py::test_shorter_prompt_prefix_reuse_matches_fresh[llama_cpp_recurrent_model_path-True-False]",
    "test_llama.py::test_shorter_prompt_prefix_reuse_matches_fresh[llama_cpp_hybrid_model_path-False-True]",
    "test_llama_chat_format.py::test_mistral_instruct",
    "test_llama_chat_format.py::test_hf_tokenizer_config_str_to_chat_formatter",
    "test_llama_grammar.py::test_grammar_from_string",
    "test_llama_grammar.py::test_composed_pydantic_grammar",
    "test_llama_grammar.py::test_grammar_anyof",
    "test_llama_speculative.py::test_find_candidate_pred_tokens",
]

# test id -> (what its failure message shows, why it fails)
_REAL_TEXT = ("' jumps over the lazy dog.'",
              "expects the text the real Qwen3.5-0.8B writes; the stand-in has random weights")
_LOAD_STATE_CALLS = ("assert 0 == 1",
                     "counts calls of Llama.load_state, which llama-cpp-python's create_completion makes on a "
                     "prompt-cache hit; allama restores the cached state inside the engine, not through that method")

EXPECTED_FAILURES = {
    "test_llama.py::test_llama_cpp_tokenization": (
        "has no attribute '_ctx'",
        "reads llama._ctx.ctx, llama-cpp-python's private ctypes context wrapper, on a vocab_only model "
        "(allama makes no context for vocab_only models; Llama.ctx is None there)"),
    "test_llama.py::test_real_model": (
        "_internals has no 'LlamaModel'",
        "drives llama-cpp-python's private _internals wrappers (LlamaModel, LlamaContext, LlamaBatch, "
        "LlamaSampler), and expects the real Qwen3.5 vocabulary's token ids"),
    "test_llama.py::test_real_llama": _REAL_TEXT,
    "test_llama.py::test_real_llama_repeated_prompt_cache": _REAL_TEXT,
    "test_llama.py::test_ram_cache_exact_prompt_hit_matches_fresh[llama_cpp_transformer_model_path-False-False]":
        _LOAD_STATE_CALLS,
    "test_llama.py::test_ram_cache_exact_prompt_hit_matches_fresh[llama_cpp_recurrent_model_path-True-False]":
        _LOAD_STATE_CALLS,
    "test_llama.py::test_ram_cache_exact_prompt_hit_matches_fresh[llama_cpp_hybrid_model_path-False-True]":
        _LOAD_STATE_CALLS,
}

pytestmark = pytest.mark.skipif(
    not SUITE.is_dir(), reason="vendor/llama_cpp_python is missing: run `python vendor/fetch_llama_cpp.py`")


@pytest.fixture(scope="module")
def outcomes(architecture_model, llama_f32_path, bert_path, tmp_path_factory) -> dict[str, tuple[str, str]]:
    """test id ("file.py::name[params]") -> (outcome, failure message) of one run of the suite."""
    fixtures = {"llama": llama_f32_path, "bert": bert_path}
    models = {hub: str(fixtures[kind] if kind in fixtures else architecture_model(kind))
              for hub, kind in HUB_FIXTURES.items()}
    report = tmp_path_factory.mktemp("llama_cpp_python_suite") / "junit.xml"
    env = {**os.environ, "SKBUILD_EDITABLE_SKIP": "1", "ALLAMA_COMPAT_MODELS": json.dumps(models)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.compat.llama_cpp_python_shim", "-p", "no:cacheprovider",
         "-q", "--tb=short", f"--junitxml={report}", str(SUITE.relative_to(REPO_ROOT))],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '').rsplit('.', 1)[-1]}.py::{case.get('name')}"
        problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        outcome = "passed" if problem is None else {"failure": "failed"}.get(problem.tag, problem.tag)
        results[test_id] = (outcome, "" if problem is None else (problem.get("message") or "")[:2000])
    return results


def test_the_suite_holds_the_tests_listed_here(outcomes):
    """A new pin with new or renamed tests shows up here: list each as a pass or an expected failure."""
    assert set(outcomes) == set(EXPECTED_PASSES) | set(EXPECTED_FAILURES)


@pytest.mark.parametrize("test_id", EXPECTED_PASSES, ids=str)
def test_passes(outcomes, test_id):
    outcome, message = outcomes.get(test_id, ("missing", ""))
    assert outcome == "passed", message


@pytest.mark.parametrize("test_id", sorted(EXPECTED_FAILURES), ids=str)
def test_fails_for_its_listed_reason(outcomes, test_id):
    outcome, message = outcomes.get(test_id, ("missing", ""))
    evidence, reason = EXPECTED_FAILURES[test_id]
    assert outcome == "failed", (
        f"{test_id} {outcome}: it was listed as failing because it {reason}; "
        "if it passes now, take it off EXPECTED_FAILURES")
    assert evidence in message, f"{test_id} fails otherwise than listed ({reason}):\n{message}"
