"""Invalid input gets a clear Python exception, never a llama.cpp abort.

Each case runs in a fresh interpreter (see isolated.py): if the input reached a
GGML_ASSERT the subprocess would die, failing this one test only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .isolated import run_isolated

SETUP = """
from allama import _native
model = _native.Model.load({model!r})
vocab = _native.Vocab(model)
p = _native.ContextParams(); p.n_ctx = 256; p.n_batch = 32; p.n_ubatch = 32; p.n_seq_max = 2; p.n_threads = 1
p.kv_unified = True
ctx = _native.Context(model, p)
"""


@pytest.fixture(scope="module")
def setup(llama_f32_path: Path) -> str:
    return SETUP.format(model=str(llama_f32_path))


def expect(outcome, type_name: str, *fragments: str) -> None:
    assert outcome.is_a(type_name), (outcome.type_name, outcome.message)
    for fragment in fragments:
        assert fragment in outcome.message, outcome.message


# --- model files -------------------------------------------------------------

def test_missing_model_file_raises_file_not_found(tmp_path):
    missing = tmp_path / "nope.gguf"
    out = run_isolated(f"from allama import _native\n_native.Model.load({str(missing)!r})")
    expect(out, "FileNotFoundError", str(missing))


def test_non_gguf_file_raises_value_error_naming_it(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a model\n")
    out = run_isolated(f"from allama import _native\n_native.Model.load({str(path)!r})")
    expect(out, "ModelLoadError", str(path), "not a GGUF file")
    assert out.is_a("ValueError")


def test_truncated_gguf_raises_value_error_naming_it(tmp_path, llama_f32_path):
    data = llama_f32_path.read_bytes()
    for name, size in (("header", 64), ("half", len(data) // 2)):
        path = tmp_path / f"truncated-{name}.gguf"
        path.write_bytes(data[:size])
        out = run_isolated(f"from allama import _native\n_native.Model.load({str(path)!r})")
        expect(out, "ModelLoadError", str(path))


def test_gguf_magic_followed_by_garbage_raises_value_error(tmp_path):
    path = tmp_path / "garbage.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 16)
    out = run_isolated(f"from allama import _native\n_native.Model.load({str(path)!r})")
    expect(out, "ModelLoadError", str(path))


def test_directory_instead_of_model_raises_value_error(tmp_path):
    out = run_isolated(f"from allama import _native\n_native.Model.load({str(tmp_path)!r})")
    expect(out, "ModelLoadError", "is a directory")


def test_missing_lora_file_raises_file_not_found(setup, tmp_path):
    out = run_isolated(setup + f"model.load_lora({str(tmp_path / 'x.gguf')!r})")
    expect(out, "FileNotFoundError", "x.gguf")


def test_lora_that_is_a_plain_model_raises_value_error(setup, llama_f32_path):
    out = run_isolated(setup + f"model.load_lora({str(llama_f32_path)!r})")
    expect(out, "ModelLoadError", "LoRA")


def test_kv_override_key_too_long_raises_value_error(llama_f32_path):
    out = run_isolated(f"""
from allama import _native
p = _native.ModelParams(); p.kv_overrides = {{"k" * 200: 1}}
_native.Model.load({str(llama_f32_path)!r}, p)
""")
    expect(out, "ValueError", "kv_overrides key")


# --- tokens, sequences, batches ------------------------------------------------

@pytest.mark.parametrize("snippet, type_name, fragment", [
    ("b = _native.Batch(4); b.add(32000, 0, 0, True); ctx.decode(b)", "ValueError", "token id 32000 at batch index 0 is out of range"),
    ("b = _native.Batch(4); b.add(-1, 0, 0, True)", "ValueError", "token id -1 is negative"),
    ("vocab.token_to_piece(99999)", "ValueError", "token id 99999 is out of range"),
    ("vocab.detokenize([1, 2, 40000])", "ValueError", "token id 40000"),
    ("vocab.is_eog(-3)", "ValueError", "out of range"),
    ("b = _native.Batch(4); b.add(5, 0, 7, True); ctx.decode(b)", "ValueError", "sequence id 7 is out of range"),
    ("b = _native.Batch(4); b.add(5, 0, -2, True)", "ValueError", "negative"),
    ("ctx.seq_rm(99)", "ValueError", "sequence id 99"),
    ("ctx.seq_cp(0, 5)", "ValueError", "sequence id 5"),
    ("ctx.seq_pos_max(2)", "ValueError", "sequence id 2"),
    ("ctx.seq_state_get(3)", "ValueError", "sequence id 3"),
    ("ctx.seq_div(0, 0, -1, 0)", "ValueError", "divisor"),
    ("b = _native.Batch(2); b.add_tokens([1, 2, 3], 0, 0)", "ValueError", "exceed its capacity of 2"),
    ("b = _native.Batch(64); b.add_tokens(list(range(5, 45)), 0, 0); ctx.decode(b)", "ValueError", "n_batch of 32"),
    ("ctx.decode(_native.Batch(4))", "ValueError", "empty"),
    ("b = _native.Batch(4); b.add(5, 0, [0, 1, 1], True)", "ValueError", "sequence ids"),
    ("b = _native.Batch(4); b.add(5, -1, 0, True)", "ValueError", "position"),
    ("_native.Batch(0)", "ValueError", "capacity"),
    ("_native.Batch(4, 5000)", "ValueError", "n_seq_max"),
    ("b = _native.Batch(4, 1, 8); import numpy as np; b.add_embeddings(np.zeros((1, 8), np.float32), 0, 0); ctx.decode(b)",
     "ValueError", "does not match the model's input width"),
    ("b = _native.Batch(4); b.add_tokens([5, 6], 0, 0, False); ctx.decode(b); ctx.logits(1)", "IndexError", "no output"),
    ("ctx.logits(0)", "IndexError", "no output"),
    ("ctx.logits(-1)", "IndexError", "out of range"),
])
def test_out_of_range_ids_and_batches_raise(setup, snippet, type_name, fragment):
    expect(run_isolated(setup + snippet), type_name, fragment)


# --- contexts ---------------------------------------------------------------------

@pytest.mark.parametrize("field, value, fragment", [
    ("n_seq_max", 0, "n_seq_max"),
    ("n_seq_max", 100000, "n_seq_max"),
    ("n_batch", 0, "n_batch"),
    ("n_threads", 0, "n_threads"),
    ("pooling_type", 9, "pooling_type"),
    ("type_k", 999, "type_k"),
    ("flash_attn_type", 5, "flash_attn_type"),
])
def test_bad_context_params_raise_value_error(setup, field, value, fragment):
    out = run_isolated(setup + f"p.{field} = {value}\n_native.Context(model, p)")
    expect(out, "ValueError", fragment)


def test_garbage_state_raises_value_error(setup):
    expect(run_isolated(setup + "ctx.state_set(b'not a state' * 10)"), "ValueError", "state")
    expect(run_isolated(setup + "ctx.seq_state_set(b'not a state' * 10, 0)"), "ValueError", "state")


def test_no_kv_slot_raises_kv_cache_full(setup):
    out = run_isolated(setup + """
for start in range(0, 256, 32):
    b = _native.Batch(32); b.add_tokens([5] * 32, start, 0, False); ctx.decode(b)
b = _native.Batch(32); b.add_tokens([5] * 32, 0, 1, True); ctx.decode(b)
""")
    expect(out, "KVCacheFullError", "KV cache")


def test_pooled_embeddings_without_pooling_raise_value_error(setup):
    expect(run_isolated(setup + "ctx.embeddings_seq(0)"), "ValueError", "pooling type none")


@pytest.mark.parametrize("path, fragment", [
    ("/nonexistent/proj.gguf", "No such file"),
    ("{model}", "Failed to load CLIP model"),  # a text model, not a projector
    ("{readme}", "invalid magic"),
])
def test_bad_projector_files_raise_value_error(setup, llama_f32_path, path, fragment):
    readme = str(Path(__file__).parents[2] / "README.md")
    code = setup + f"_native.MediaContext(model, {path.format(model=str(llama_f32_path), readme=readme)!r})"
    expect(run_isolated(code), "ValueError", "cannot load the projector", fragment)


MEAN_POOLED = """
p = _native.ContextParams(); p.n_ctx = 512; p.n_batch = p.n_ubatch = 512; p.n_seq_max = 3; p.n_threads = 1
p.pooling_type = 1
"""


def test_mean_pooling_with_n_ubatch_not_a_multiple_of_n_seq_max_raises(setup):
    # llama.cpp would abort on the first decode (GGML_ASSERT in the pooling matmul)
    out = run_isolated(setup + MEAN_POOLED + """
p.embeddings = True
c = _native.Context(model, p)
b = _native.Batch(8); b.add_tokens([1, 5, 6], 0, 0, True); c.decode(b)
""")
    expect(out, "ValueError", "mean pooling", "n_ubatch (512)", "n_seq_max (3)")
    out = run_isolated(setup + MEAN_POOLED + """
c = _native.Context(model, p)
c.set_embeddings(True)
""")
    expect(out, "ValueError", "mean pooling")


@pytest.mark.parametrize("grammar, reason", [
    ('root ::= "open', "unexpected end of input"),
    ("root ::= ( a", "expecting ')'"),
    ("not a grammar at all", "expecting ::="),
    ("root ::= other", "rule 'other' is used but never defined"),
    ('start ::= "a"', "no rule named 'root'"),
    ("  # only a comment\n", "defines no rules"),
    ("root ::= root", "left recursion"),
    ('root ::= "a"{99999999}', "repetitions"),
    ("root ::= [\\x]", "expecting"),
])
def test_grammar_that_does_not_parse_raises_grammar_error_with_the_reason(setup, grammar, reason):
    out = run_isolated(setup + f"s = _native.SamplerParams(); s.grammar = {grammar!r}\n_native.SamplerChain(model, s)")
    expect(out, "GrammarError", reason)
    assert out.is_a("ValueError")


def test_grammar_matching_nothing_fails_at_sampling_time(setup):
    out = run_isolated(setup + """
s = _native.SamplerParams(); s.grammar = 'root ::= [z-a]'; s.temperature = 0.0
chain = _native.SamplerChain(model, s)
b = _native.Batch(8); b.add_tokens([1, 450], 0, 0, True); ctx.decode(b)
chain.sample(ctx, -1)
""")
    expect(out, "GrammarError", "allows no next token")


def test_lazy_grammar_with_bad_trigger_pattern_raises_grammar_error(setup):
    out = run_isolated(setup + """
s = _native.SamplerParams(); s.grammar = 'root ::= "a"'; s.grammar_lazy = True; s.grammar_trigger_patterns = ["(unclosed"]
_native.SamplerChain(model, s)
""")
    expect(out, "GrammarError")


def test_use_after_close_raises_closed_error(setup):
    expect(run_isolated(setup + "ctx.close(); ctx.n_ctx"), "ClosedError", "closed")
    expect(run_isolated(setup + "model.close(); model.metadata"), "ClosedError", "closed")
    expect(run_isolated(setup + "model.close(); _native.Vocab(model)"), "ClosedError", "closed")
