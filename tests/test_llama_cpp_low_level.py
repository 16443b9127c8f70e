"""allama.llama_cpp: llama.cpp's C functions under their C names, driven the way
llama-cpp-python's low-level examples drive them."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from allama import llama_cpp as L
from allama.errors import GrammarError
from allama.sync import Llama
from allama.testing.model_builder import build_lora

from .tiny_models import TINY_LLAMA
from .native.isolated import run_isolated

PROMPT = b"The quick brown fox"


@pytest.fixture(scope="module")
def model(llama_f32_path: Path):
    params = L.llama_model_default_params()
    params.n_gpu_layers = 0
    m = L.llama_model_load_from_file(str(llama_f32_path).encode(), params)
    yield m
    if not m.closed:
        L.llama_model_free(m)


@pytest.fixture(scope="module")
def vocab(model):
    return L.llama_model_get_vocab(model)


def new_context(model, n_seq_max: int = 1):
    params = L.llama_context_default_params()
    params.n_ctx = 256
    params.n_batch = params.n_ubatch = 64
    params.n_seq_max = n_seq_max
    params.n_threads = params.n_threads_batch = 2
    return L.llama_init_from_model(model, params)


@pytest.fixture()
def ctx(model):
    c = new_context(model)
    yield c
    if not c.closed:
        L.llama_free(c)


def tokenize(vocab, text: bytes, add_special: bool = True) -> list[int]:
    buf = (ctypes.c_int32 * (len(text) + 8))()
    n = L.llama_tokenize(vocab, text, len(text), buf, len(buf), add_special, False)
    assert n >= 0
    return list(buf[:n])


def fill(batch, tokens: list[int], pos0: int, seq_id: int = 0) -> None:
    """What llama-cpp-python's examples do: write each field of the batch by hand."""
    for i, token in enumerate(tokens):
        batch.token[i] = token
        batch.pos[i] = pos0 + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq_id
        batch.logits[i] = i == len(tokens) - 1
    batch.n_tokens = len(tokens)


def generate(ctx, vocab, chain, prompt: list[int], n_predict: int) -> tuple[list[int], bytes]:
    """The greedy loop of llama.cpp's simple example, through allama.llama_cpp only."""
    batch = L.llama_batch_init(64, 0, 1)
    fill(batch, prompt, 0)
    assert L.llama_decode(ctx, batch) == 0
    out, text, n_past = [], b"", len(prompt)
    while len(out) < n_predict:
        token = L.llama_sampler_sample(chain, ctx, -1)
        if L.llama_vocab_is_eog(vocab, token):
            break
        out.append(token)
        piece = (ctypes.c_char * 32)()
        n = L.llama_token_to_piece(vocab, token, piece, 32, 0, False)
        text += piece[:n]
        fill(batch, [token], n_past)
        n_past += 1
        assert L.llama_decode(ctx, batch) == 0
    L.llama_batch_free(batch)
    return out, text


# --- generation ----------------------------------------------------------------


def test_greedy_loop_gives_the_high_level_completion(llama_f32_path, model, vocab):
    ctx = new_context(model)
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
    tokens, text = generate(ctx, vocab, chain, tokenize(vocab, PROMPT), 12)
    L.llama_sampler_free(chain)
    L.llama_free(ctx)

    llm = Llama(str(llama_f32_path), n_ctx=256, n_threads=2, n_threads_batch=2)
    try:
        expected = llm.create_completion(PROMPT.decode(), max_tokens=12, temperature=0)
    finally:
        llm.close()
    assert text.decode("utf-8", "replace") == expected["choices"][0]["text"]
    assert len(tokens) == expected["usage"]["completion_tokens"]


def test_seeded_top_k_temp_dist_chain_is_reproducible(model, vocab):
    def run(seed: int) -> list[int]:
        ctx = new_context(model)
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        for smpl in (L.llama_sampler_init_top_k(40), L.llama_sampler_init_temp(1.5), L.llama_sampler_init_dist(seed)):
            L.llama_sampler_chain_add(chain, smpl)
        assert L.llama_sampler_get_seed(chain) == seed
        tokens, _ = generate(ctx, vocab, chain, tokenize(vocab, PROMPT), 10)
        L.llama_sampler_free(chain)
        L.llama_free(ctx)
        return tokens

    assert run(1234) == run(1234)


def test_batch_get_one_continues_sequence_zero(ctx, vocab):
    prompt = tokenize(vocab, PROMPT)
    assert L.llama_decode(ctx, L.llama_batch_get_one(prompt, len(prompt))) == 0
    mem = L.llama_get_memory(ctx)
    assert L.llama_memory_seq_pos_max(mem, 0) == len(prompt) - 1
    token = int(np.argmax(L.llama_get_logits_ith(ctx, -1)))
    assert L.llama_decode(ctx, L.llama_batch_get_one([token], 1)) == 0
    assert L.llama_memory_seq_pos_max(mem, 0) == len(prompt)


def test_get_logits_is_every_output_row_flat(ctx, vocab):
    prompt = tokenize(vocab, PROMPT)
    batch = L.llama_batch_init(64, 0, 1)
    fill(batch, prompt, 0)
    batch.logits[: len(prompt)] = 1
    L.llama_decode(ctx, batch)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    logits = L.llama_get_logits(ctx)
    assert logits.shape == (len(prompt) * n_vocab,) and logits.dtype == np.float32
    np.testing.assert_array_equal(logits[-n_vocab:], L.llama_get_logits_ith(ctx, len(prompt) - 1))
    np.testing.assert_array_equal(logits[:n_vocab], L.llama_get_logits_ith(ctx, 0))


# --- defaults and queries -------------------------------------------------------


def test_default_params_are_llama_cpp_defaults():
    mparams = L.llama_model_default_params()
    cparams = L.llama_context_default_params()
    assert mparams.n_gpu_layers == -1 and mparams.use_mmap
    assert (cparams.n_ctx, cparams.n_batch, cparams.n_ubatch, cparams.n_seq_max) == (512, 2048, 512, 1)
    assert cparams.n_threads == cparams.n_threads_batch == 4  # GGML_DEFAULT_N_THREADS
    assert cparams.no_perf and cparams.type_k == L.GGML_TYPE_F16
    assert L.llama_sampler_chain_default_params().no_perf


def test_model_context_and_vocab_queries(model, ctx, vocab):
    assert L.llama_n_ctx(ctx) == 256 and L.llama_n_batch(ctx) == 64 and L.llama_n_seq_max(ctx) == 1
    assert L.llama_model_n_embd(model) > 0 and L.llama_model_n_layer(model) > 0
    assert L.llama_model_n_params(model) > 0 and L.llama_model_size(model) > 0
    assert L.llama_vocab_type(vocab) == L.LLAMA_VOCAB_TYPE_SPM
    assert L.llama_vocab_is_eog(vocab, L.llama_vocab_eos(vocab))
    assert L.llama_vocab_get_text(vocab, L.llama_vocab_bos(vocab)) == b"<s>"
    assert L.llama_get_model(ctx).handle == model.handle
    L.llama_set_n_threads(ctx, 1, 1)
    assert (L.llama_n_threads(ctx), L.llama_n_threads_batch(ctx)) == (1, 1)
    desc = ctypes.create_string_buffer(64)
    n = L.llama_model_desc(model, desc, 64)
    assert n > 0 and desc.value == L.llama_model_desc(model, None, 0)
    assert L.llama_model_meta_val_str(model, b"general.architecture", None, 0) == b"llama"
    assert L.llama_model_meta_val_str(model, b"no.such.key", bytearray(8), 8) == -1


# --- out-buffers ----------------------------------------------------------------


def test_tokenize_fills_a_buffer_or_returns_a_list(vocab):
    ids = L.llama_tokenize(vocab, PROMPT, len(PROMPT), None, 0, True, False)
    assert ids[0] == L.llama_vocab_bos(vocab) and len(ids) > 2
    small = [0] * 2
    assert L.llama_tokenize(vocab, PROMPT, len(PROMPT), small, 2, True, False) == -len(ids)
    array = np.zeros(32, np.int32)
    assert L.llama_tokenize(vocab, PROMPT, len(PROMPT), array, 32, True, False) == len(ids)
    assert array[: len(ids)].tolist() == ids
    grown: list[int] = []
    assert L.llama_tokenize(vocab, PROMPT, len(PROMPT), grown, 32, True, False) == len(ids) and grown == ids
    prefix = L.llama_tokenize(vocab, PROMPT, 3, None, 0, False, False)  # text_len counts
    assert prefix == L.llama_tokenize(vocab, b"The", 3, None, 0, False, False)


def test_token_to_piece_returns_minus_the_needed_length_when_short(vocab):
    (token,) = L.llama_tokenize(vocab, b"quick", 5, None, 0, False, False)
    piece = L.llama_token_to_piece(vocab, token, None, 0, 0, False)
    assert piece == b" quick"
    buf = bytearray(2)
    assert L.llama_token_to_piece(vocab, token, buf, 2, 0, False) == -len(piece)
    buf = bytearray(16)
    assert L.llama_token_to_piece(vocab, token, buf, 16, 0, False) == len(piece) and bytes(buf[: len(piece)]) == piece
    with pytest.raises(TypeError, match="read-only"):
        L.llama_token_to_piece(vocab, token, b" " * 16, 16, 0, False)


def test_chat_template_formats_messages(vocab):
    chat = [{"role": "user", "content": "hi"}, L.llama_chat_message(b"assistant", b"hello")]
    text = L.llama_chat_apply_template(b"chatml", chat, 2, True, None, 0)
    assert text == b"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>assistant\n"
    buf = ctypes.create_string_buffer(8)
    assert L.llama_chat_apply_template(b"chatml", chat, 2, True, buf, 8) == len(text)
    assert buf.raw == text[:8]
    assert b"chatml" in L.llama_chat_builtin_templates(None, 0)


def test_null_or_unknown_chat_template_raises():
    chat = [("user", "hi")]
    with pytest.raises(ValueError, match="tmpl is None"):
        L.llama_chat_apply_template(None, chat, 1, True, None, 0)
    with pytest.raises(ValueError, match="does not recognise"):
        L.llama_chat_apply_template(b"no-such-template", chat, 1, True, None, 0)
    with pytest.raises(ValueError, match="n_msg"):
        L.llama_chat_apply_template(b"chatml", chat, 2, True, None, 0)


# --- state ----------------------------------------------------------------------


def test_state_file_round_trip_restores_the_kv_cache(model, vocab, tmp_path):
    prompt = tokenize(vocab, PROMPT)
    first = new_context(model)
    L.llama_decode(first, L.llama_batch_get_one(prompt, len(prompt)))
    path = str(tmp_path / "session.bin").encode()
    assert L.llama_state_save_file(first, path, prompt, len(prompt))

    second = new_context(model)
    tokens_out = (ctypes.c_int32 * 64)()
    count = ctypes.c_size_t(0)
    assert L.llama_state_load_file(second, path, tokens_out, 64, ctypes.byref(count))
    assert list(tokens_out[: count.value]) == prompt
    assert L.llama_memory_seq_pos_max(second, 0) == len(prompt) - 1
    # Both continue identically from the restored cache.
    for c in (first, second):
        L.llama_decode(c, L.llama_batch_get_one([prompt[-1]], 1))
    np.testing.assert_array_equal(L.llama_get_logits_ith(first, -1), L.llama_get_logits_ith(second, -1))
    assert not L.llama_state_load_file(second, path, tokens_out, 1, count)  # over capacity
    L.llama_free(first)
    L.llama_free(second)


def test_state_data_round_trip(model, vocab):
    prompt = tokenize(vocab, PROMPT)
    ctx = new_context(model)
    L.llama_decode(ctx, L.llama_batch_get_one(prompt, len(prompt)))
    size = L.llama_state_get_size(ctx)
    data = L.llama_state_get_data(ctx, None, 0)
    assert len(data) == size
    buf = bytearray(size)
    assert L.llama_state_get_data(ctx, buf, size) == size and bytes(buf) == data
    assert L.llama_state_get_data(ctx, bytearray(8), 8) == 0
    seq = L.llama_state_seq_get_data(ctx, None, 0, 0)
    assert len(seq) == L.llama_state_seq_get_size(ctx, 0)
    L.llama_memory_clear(L.llama_get_memory(ctx), True)
    assert L.llama_memory_seq_pos_max(ctx, 0) == -1
    assert L.llama_state_set_data(ctx, data, size) == size
    assert L.llama_memory_seq_pos_max(ctx, 0) == len(prompt) - 1
    L.llama_memory_seq_rm(ctx, 0, -1, -1)
    assert L.llama_state_seq_set_data(ctx, seq, len(seq), 0) == len(seq)
    assert L.llama_memory_seq_pos_max(ctx, 0) == len(prompt) - 1
    with pytest.raises(ValueError):
        L.llama_state_set_data(ctx, b"garbage", 7)
    L.llama_free(ctx)


# --- logging and perf -----------------------------------------------------------


def test_log_set_receives_llama_cpp_messages(ctx, vocab):
    seen: list[tuple[int, bytes, object]] = []

    @L.llama_log_callback
    def on_log(level, text, user_data):
        seen.append((level, text, user_data))

    marker = object()
    L.llama_log_set(on_log, marker)
    try:
        L.llama_perf_context_print(ctx)
    finally:
        L.llama_log_set(None, None)
    assert seen and all(user_data is marker for _, _, user_data in seen)
    assert any(level == L.GGML_LOG_LEVEL_INFO and b"load time" in text for level, text, _ in seen)
    count = len(seen)
    L.llama_perf_context_print(ctx)
    assert len(seen) == count  # None restored allama's default


def test_a_failing_log_callback_is_reported_not_raised_into_llama_cpp(ctx, monkeypatch):
    reported: list[BaseException] = []
    monkeypatch.setattr("sys.unraisablehook", lambda info: reported.append(info.exc_value))

    def broken(level, text, user_data):
        raise RuntimeError("callback bug")

    L.llama_log_set(broken, None)
    try:
        L.llama_perf_context_print(ctx)
    finally:
        L.llama_log_set(None, None)
    assert reported and all(isinstance(e, RuntimeError) for e in reported)
    assert L.llama_n_ctx(ctx) == 256


def test_perf_counts_decoded_tokens(model, vocab):
    params = L.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch, params.no_perf = 256, 64, 64, False
    params.n_threads = params.n_threads_batch = 2
    ctx = L.llama_init_from_model(model, params)
    prompt = tokenize(vocab, PROMPT)
    L.llama_decode(ctx, L.llama_batch_get_one(prompt, len(prompt)))
    L.llama_get_logits_ith(ctx, -1)  # llama.cpp counts a decode when it next synchronises
    L.llama_decode(ctx, L.llama_batch_get_one([prompt[-1]], 1))
    L.llama_get_logits_ith(ctx, -1)
    data = L.llama_perf_context(ctx)
    assert (data.n_p_eval, data.n_eval) == (len(prompt), 1)
    assert data.t_p_eval_ms > 0 and data.t_eval_ms > 0
    L.llama_free(ctx)


# --- handles --------------------------------------------------------------------


def test_freed_handles_raise_value_error(model, vocab):
    ctx = new_context(model)
    batch = L.llama_batch_init(8, 0, 1)
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_free(ctx)
    L.llama_batch_free(batch)
    L.llama_sampler_free(chain)
    uses = [
        lambda: L.llama_n_ctx(ctx),
        lambda: L.llama_get_logits_ith(ctx, -1),
        lambda: L.llama_memory_clear(ctx, True),
        lambda: L.llama_state_get_size(ctx),
        lambda: L.llama_free(ctx),
        lambda: batch.token,
        lambda: L.llama_batch_free(batch),
        lambda: L.llama_sampler_name(chain),
        lambda: L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy()),
        lambda: L.llama_sampler_free(chain),
    ]
    for use in uses:
        with pytest.raises(ValueError):
            use()
    fresh = new_context(model)
    with pytest.raises(ValueError, match="freed"):
        L.llama_decode(fresh, batch)
    with pytest.raises(ValueError):
        L.llama_sampler_sample(chain, fresh, -1)
    L.llama_free(fresh)


def test_freed_model_raises_but_its_context_keeps_working(llama_f32_path, vocab):
    model = L.llama_model_load_from_file(str(llama_f32_path).encode(), L.llama_model_default_params())
    ctx = new_context(model)
    L.llama_model_free(model)
    for use in (lambda: L.llama_model_n_embd(model), lambda: new_context(model), lambda: L.llama_model_free(model)):
        with pytest.raises(ValueError):
            use()
    prompt = tokenize(vocab, PROMPT)
    assert L.llama_decode(ctx, L.llama_batch_get_one(prompt, len(prompt))) == 0
    L.llama_free(ctx)


def test_none_and_wrong_handles_raise_type_error(model, ctx, vocab):
    batch = L.llama_batch_get_one([1], 1)
    uses = [
        lambda: L.llama_n_ctx(None),
        lambda: L.llama_model_n_embd(ctx),
        lambda: L.llama_vocab_n_tokens(model),
        lambda: L.llama_tokenize(None, PROMPT, len(PROMPT), None, 0, True, False),
        lambda: L.llama_decode(ctx, None),
        lambda: L.llama_decode(None, batch),
        lambda: L.llama_sampler_sample(None, ctx, -1),
        lambda: L.llama_sampler_sample(L.llama_sampler_init_greedy(), None, -1),
        lambda: L.llama_sampler_chain_add(L.llama_sampler_init_greedy(), None),
        lambda: L.llama_init_from_model(model, None),
        lambda: L.llama_model_load_from_file(None, L.llama_model_default_params()),
        lambda: L.llama_log_set(42, None),
    ]
    for use in uses:
        with pytest.raises(TypeError):
            use()


def test_batch_get_one_batches_are_not_freed(vocab):
    with pytest.raises(ValueError, match="get_one"):
        L.llama_batch_free(L.llama_batch_get_one([1, 2], 2))


# --- bad input (each in a fresh interpreter: reaching llama.cpp would abort it) ---

SETUP = """
import numpy as np
from allama import llama_cpp as L
model = L.llama_model_load_from_file({model!r}, L.llama_model_default_params())
vocab = L.llama_model_get_vocab(model)
params = L.llama_context_default_params()
params.n_ctx = 128; params.n_batch = params.n_ubatch = 16; params.n_seq_max = 2; params.n_threads = 1
ctx = L.llama_init_from_model(model, params)
batch = L.llama_batch_init(32, 0, 2)
def fill(n, token=1, seq=0):
    for i in range(n):
        batch.token[i] = token; batch.pos[i] = i; batch.n_seq_id[i] = 1; batch.seq_id[i][0] = seq; batch.logits[i] = 1
    batch.n_tokens = n
"""

BAD_INPUT = {
    "token id out of range": ("fill(3, token=L.llama_vocab_n_tokens(vocab))\nL.llama_decode(ctx, batch)",
                              "ValueError", "out of range"),
    "negative token id": ("fill(3, token=-5)\nL.llama_decode(ctx, batch)", "ValueError", "negative"),
    "sequence id past n_seq_max": ("fill(2, seq=2)\nL.llama_decode(ctx, batch)", "ValueError", "sequence id 2"),
    "too many sequence ids": ("fill(2)\nbatch.n_seq_id[0] = 3\nL.llama_decode(ctx, batch)", "ValueError", "n_seq_id"),
    "n_tokens past capacity": ("fill(2)\nbatch.n_tokens = 33\nL.llama_decode(ctx, batch)", "ValueError", "capacity"),
    "more tokens than n_batch": ("fill(20)\nL.llama_decode(ctx, batch)", "ValueError", "n_batch"),
    "empty batch": ("L.llama_decode(ctx, batch)", "ValueError", "empty"),
    "output index out of range": ("fill(2)\nL.llama_decode(ctx, batch)\nL.llama_get_logits_ith(ctx, 5)",
                                  "IndexError", "batch index 5"),
    "sample index out of range": ("fill(2)\nL.llama_decode(ctx, batch)\n"
                                  "L.llama_sampler_sample(L.llama_sampler_init_greedy(), ctx, -3)", "IndexError", "-3"),
    "sample before any decode": ("L.llama_sampler_sample(L.llama_sampler_init_greedy(), ctx, -1)", "IndexError", ""),
    "chain without a selecting sampler": (
        "fill(2)\nL.llama_decode(ctx, batch)\nc = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())\n"
        "L.llama_sampler_chain_add(c, L.llama_sampler_init_top_k(3))\nL.llama_sampler_sample(c, ctx, -1)",
        "ValueError", "selected no token"),
    "end of generation into an unfinished grammar": (
        "g = L.llama_sampler_init_grammar(vocab, b'root ::= \"a\" \"b\"', b'root')\n"
        "L.llama_sampler_accept(g, L.llama_vocab_eos(vocab))", "GrammarError", "does not allow"),
    "memory op on a sequence past n_seq_max": ("L.llama_memory_seq_cp(ctx, 0, 7, -1, -1)", "ValueError",
                                               "sequence id 7"),
    "piece of a token past the vocabulary": ("L.llama_token_to_piece(vocab, 10**6, None, 0, 0, False)",
                                             "ValueError", "out of range"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_raises_instead_of_aborting(case, llama_f32_path):
    code, type_name, fragment = BAD_INPUT[case]
    out = run_isolated(SETUP.format(model=str(llama_f32_path)) + code)
    assert out.is_a(type_name), (out.type_name, out.message)
    assert fragment in out.message, out.message


def test_unparsable_grammar_raises_grammar_error(vocab):
    with pytest.raises(GrammarError):
        L.llama_sampler_init_grammar(vocab, b'root ::= ("a"', b"root")
    with pytest.raises(GrammarError, match="no rule named"):
        L.llama_sampler_init_grammar(vocab, b'root ::= "a"', b"start")


def test_pooled_embeddings_through_encode(bert_path):
    model = L.llama_model_load_from_file(str(bert_path).encode(), L.llama_model_default_params())
    params = L.llama_context_default_params()
    params.embeddings = True
    params.n_ctx, params.n_batch, params.n_ubatch = 128, 64, 64
    params.n_threads = params.n_threads_batch = 2
    ctx = L.llama_init_from_model(model, params)
    vocab = L.llama_model_get_vocab(model)
    tokens = L.llama_tokenize(vocab, b"hello world", 11, None, 0, True, False)
    batch = L.llama_batch_init(64, 0, 1)
    fill(batch, tokens, 0)
    batch.logits[: len(tokens)] = 1
    assert L.llama_encode(ctx, batch) == 0
    assert L.llama_pooling_type(ctx) != L.LLAMA_POOLING_TYPE_NONE
    pooled = L.llama_get_embeddings_seq(ctx, 0)
    assert pooled.shape == (L.llama_model_n_embd_out(model),) and np.isfinite(pooled).all()
    with pytest.raises(ValueError):
        L.llama_get_embeddings_seq(ctx, 1)
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)


def test_lora_adapter_changes_the_logits_until_removed(model, vocab, models_dir):
    path = build_lora(models_dir / "low-level-lora.gguf", TINY_LLAMA)
    adapter = L.llama_adapter_lora_init(model, str(path).encode())
    ctx = new_context(model)
    prompt = tokenize(vocab, PROMPT)

    def last_logits() -> np.ndarray:
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        L.llama_decode(ctx, L.llama_batch_get_one(prompt, len(prompt)))
        return L.llama_get_logits_ith(ctx, -1)

    base = last_logits()
    assert L.llama_set_adapters_lora(ctx, [adapter], 1, [1.0]) == 0
    assert not np.allclose(last_logits(), base)
    assert L.llama_set_adapters_lora(ctx, None, 0, None) == 0
    np.testing.assert_array_equal(last_logits(), base)
    L.llama_free(ctx)


# --- the rest of llama-cpp-python's surface (tests/test_llama_cpp_surface.py checks the names) ---


def test_metadata_enumerates_by_index_with_out_buffers(model):
    n = L.llama_model_meta_count(model)
    assert n > 0
    pairs = {L.llama_model_meta_key_by_index(model, i, None, 0): L.llama_model_meta_val_str_by_index(model, i, None, 0)
             for i in range(n)}
    assert pairs[b"general.architecture"] == b"llama"
    assert {k.decode(): v.decode() for k, v in pairs.items()} == model.metadata
    buf = ctypes.create_string_buffer(256)
    assert L.llama_model_meta_key_by_index(model, 0, buf, len(buf)) == len(buf.value) > 0
    assert L.llama_model_meta_key_by_index(model, n, buf, len(buf)) == -1 and buf.value == b""
    assert L.llama_model_meta_val_str_by_index(model, -1, None, 0) is None
    assert L.llama_model_meta_key_str(L.LLAMA_MODEL_META_KEY_SAMPLING_TOP_K) == b"general.sampling.top_k"
    assert L.llama_model_meta_key_str(99) is None


def test_split_path_and_prefix_invert_each_other():
    assert L.llama_split_path(None, 0, b"/m/model", 1, 4) == b"/m/model-00002-of-00004.gguf"
    buf = ctypes.create_string_buffer(64)
    assert L.llama_split_path(buf, len(buf), "/m/model", 1, 4) == 28 and buf.value == b"/m/model-00002-of-00004.gguf"
    assert L.llama_split_path(ctypes.create_string_buffer(8), 8, b"/m/model", 1, 4) == 0  # does not fit
    assert L.llama_split_prefix(buf, len(buf), b"/m/model-00002-of-00004.gguf", 1, 4) == 8 and buf.value == b"/m/model"
    assert L.llama_split_prefix(None, 0, b"/m/model-00002-of-00004.gguf", 2, 4) == b""  # suffix does not match


def test_enum_names_and_bad_values_raise_instead_of_aborting():
    assert L.llama_ftype_name(L.LLAMA_FTYPE_MOSTLY_Q8_0) == b"Q8_0"
    assert L.llama_flash_attn_type_name(L.LLAMA_FLASH_ATTN_TYPE_AUTO) == b"auto"
    with pytest.raises(ValueError):
        L.llama_flash_attn_type_name(7)  # C aborts
    for mode in range(L.LLAMA_LOAD_MODE_AUTO, L.LLAMA_LOAD_MODE_DIRECT_IO + 1):
        assert L.llama_load_mode_from_str(L.llama_load_mode_name(mode)) == mode
    with pytest.raises(ValueError):
        L.llama_load_mode_name(9)
    with pytest.raises(ValueError, match="unknown load mode"):
        L.llama_load_mode_from_str(b"turbo")  # C throws through its C API
    assert L.llama_max_tensor_buft_overrides() > 0


def test_context_flags_and_model_counts(model, ctx):
    assert L.llama_get_causal_attn(ctx) is True
    L.llama_set_causal_attn(ctx, False)
    assert L.llama_get_causal_attn(ctx) is False
    L.llama_set_causal_attn(ctx, True)
    assert L.llama_n_rs_seq(ctx) == 0  # no recurrent layers
    assert L.llama_model_n_layer_nextn(model) == 0
    L.llama_set_warmup(ctx, False)


def test_token_helpers_and_their_old_names(vocab):
    assert L.llama_token_fim_pre(vocab) == L.llama_vocab_fim_pre(vocab)
    assert L.llama_token_sep(vocab) == L.llama_vocab_sep(vocab)
    assert L.llama_token_cls(vocab) == L.llama_vocab_cls(vocab) == L.llama_vocab_bos(vocab)
    count = ctypes.c_int32(-1)
    assert L.llama_vocab_get_suppress_tokens(vocab, ctypes.byref(count)) == [] and count.value == 0


def test_ctypes_token_arrays_are_token_buffers(vocab):
    buf = (L.llama_token * 32)()
    n = L.llama_tokenize(vocab, PROMPT, len(PROMPT), buf, len(buf), True, False)
    assert 0 < n and list(buf[:n]) == L.llama_tokenize(vocab, PROMPT, len(PROMPT), None, 0, True, False)


def _decode_prompt(ctx, vocab) -> int:
    tokens = tokenize(vocab, PROMPT)
    batch = L.llama_batch_init(64, 0, 1)
    fill(batch, tokens, 0)
    return L.llama_decode(ctx, batch)


def test_abort_callback_returning_true_makes_decode_return_2(ctx, vocab):
    seen = []

    def stop(data):
        seen.append(data)
        return True

    L.llama_set_abort_callback(ctx, stop, "user-data")
    assert _decode_prompt(ctx, vocab) == 2
    assert seen and set(seen) == {"user-data"}
    L.llama_set_abort_callback(ctx, None, None)
    L.llama_memory_clear(ctx, True)
    assert _decode_prompt(ctx, vocab) == 0


def test_abort_callback_as_ctypes_function_and_false_lets_decode_run(ctx, vocab):
    calls = []
    callback = L.ggml_abort_callback(lambda data: calls.append(data) or False)
    L.llama_set_abort_callback(ctx, callback, None)
    assert _decode_prompt(ctx, vocab) == 0
    assert calls


def test_abort_callback_that_raises_or_uses_the_context_does_not_deadlock(ctx, vocab):
    import sys

    reported = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda info: reported.append(info.exc_value)
    try:
        L.llama_set_abort_callback(ctx, lambda _: L.llama_memory_seq_pos_max(ctx, 0) + 2, None)  # locks the context
        assert _decode_prompt(ctx, vocab) == 0
        L.llama_memory_clear(ctx, True)
        L.llama_set_abort_callback(ctx, lambda _: 1 / 0, None)
        assert _decode_prompt(ctx, vocab) == 0
    finally:
        sys.unraisablehook = old_hook
    assert any(isinstance(e, RuntimeError) and "abort callback" in str(e) for e in reported)
    assert any(isinstance(e, ZeroDivisionError) for e in reported)
    with pytest.raises(TypeError, match="callable"):
        L.llama_set_abort_callback(ctx, 42, None)


def test_state_seq_ext_and_old_state_names_round_trip(model, vocab):
    c = new_context(model)
    try:
        assert _decode_prompt(c, vocab) == 0
        flags = L.LLAMA_STATE_SEQ_FLAGS_NONE
        size = L.llama_state_seq_get_size_ext(c, 0, flags)
        buf = (ctypes.c_uint8 * size)()
        assert L.llama_state_seq_get_data_ext(c, buf, size, 0, flags) == size
        assert L.llama_state_seq_get_data_ext(c, bytearray(1), 1, 0, flags) == 0  # does not fit
        L.llama_memory_clear(c, True)
        assert L.llama_state_seq_set_data_ext(c, bytes(buf), size, 0, flags) == size
        assert L.llama_memory_seq_pos_max(c, 0) == len(tokenize(vocab, PROMPT)) - 1
        with pytest.raises(ValueError, match="flags"):
            L.llama_state_seq_get_size_ext(c, 0, 8)
        with pytest.raises(ValueError):
            L.llama_state_seq_get_size_ext(c, 5, flags)
        assert L.llama_get_state_size(c) == L.llama_state_get_size(c)
        assert L.llama_copy_state_data(c, None, 0) == L.llama_state_get_data(c, None, 0)
    finally:
        L.llama_free(c)


def _candidates(values: list[float]):
    data = (L.llama_token_data * len(values))(*[L.llama_token_data(i, v, 0.0) for i, v in enumerate(values)])
    return data, L.llama_token_data_array(data, len(values), -1, False)


def test_sampler_apply_works_on_a_token_data_array_in_place():
    data, arr = _candidates([0.5, 3.0, 1.0, 2.0])
    greedy = L.llama_sampler_init_greedy()
    L.llama_sampler_apply(greedy, ctypes.byref(arr))
    assert data[arr.selected].id == 1
    top_k = L.llama_sampler_init_top_k(2)
    L.llama_sampler_apply(top_k, ctypes.pointer(arr))
    assert arr.size == 2 and sorted(data[i].id for i in range(2)) == [1, 3]
    records = np.ctypeslib.as_array(data)  # llama-cpp-python's numpy view of the same memory
    assert set(records["id"][:2]) == {1, 3}


def test_sampler_apply_rejects_bad_candidates(vocab):
    _, empty = _candidates([])
    with pytest.raises(ValueError, match="no candidates"):
        L.llama_sampler_apply(L.llama_sampler_init_greedy(), empty)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    data, arr = _candidates([1.0, 2.0])
    data[1].id = n_vocab + 5
    with pytest.raises(ValueError, match="out of range"):
        L.llama_sampler_apply(L.llama_sampler_init_grammar(vocab, 'root ::= "a"', "root"), arr)
    with pytest.raises(TypeError):
        L.llama_sampler_apply(L.llama_sampler_init_greedy(), [1.0, 2.0])


def test_sampler_copy_needs_the_same_kind():
    a, b = L.llama_sampler_init_dist(1), L.llama_sampler_init_dist(2)
    L.llama_sampler_copy(a, b)
    with pytest.raises(ValueError, match="same type"):
        L.llama_sampler_copy(a, L.llama_sampler_init_greedy())


def test_newer_sampler_constructors(vocab):
    assert L.llama_sampler_name(L.llama_sampler_init_adaptive_p(0.5, 0.9, 7)) == b"adaptive-p"
    with pytest.raises(ValueError):
        L.llama_sampler_init_adaptive_p(0.5, 2.0, 7)
    assert L.llama_sampler_name(L.llama_sampler_init_infill(vocab)) == b"infill"
    lazy = L.llama_sampler_init_grammar_lazy(vocab, 'root ::= "a"', "root", [b"<tool(", b"x"], 2, [], 0)
    assert L.llama_sampler_name(lazy) == b"grammar"
    with pytest.raises(GrammarError):
        L.llama_sampler_init_grammar_lazy(vocab, "root ::= (", "root", [b"x"], 1, [], 0)


def test_control_vector_checks_its_width(model, ctx):
    n_embd = L.llama_model_n_embd(model)
    n_layer = L.llama_model_n_layer(model)
    data = np.zeros(n_embd * n_layer, np.float32)
    assert L.llama_set_adapter_cvec(ctx, data, data.size, n_embd, 1, n_layer - 1) == 0
    assert L.llama_set_adapter_cvec(ctx, None, 0, n_embd, -1, -1) == 0
    with pytest.raises(ValueError, match="n_embd"):
        L.llama_set_adapter_cvec(ctx, data, data.size, n_embd + 1, 1, 1)
    with pytest.raises(ValueError, match="len"):
        L.llama_set_adapter_cvec(ctx, data, data.size + 1, n_embd, 1, 1)


def test_model_save_to_file_writes_a_loadable_model(model, tmp_path):
    out = tmp_path / "saved.gguf"
    L.llama_model_save_to_file(model, str(out).encode())
    params = L.llama_model_default_params()
    params.n_gpu_layers = 0
    saved = L.llama_model_load_from_file(out, params)
    assert L.llama_model_n_params(saved) == L.llama_model_n_params(model)
    L.llama_model_free(saved)
    with pytest.raises(OSError):
        L.llama_model_save_to_file(model, tmp_path / "missing-dir" / "x.gguf")


def test_kv_overrides_take_ctypes_override_arrays(llama_f32_path):
    overrides = (L.llama_model_kv_override * 2)()
    overrides[0].key = b"llama.context_length"
    overrides[0].tag = L.LLAMA_KV_OVERRIDE_TYPE_INT
    overrides[0].value.val_i64 = 77
    params = L.llama_model_default_params()
    params.n_gpu_layers = 0
    params.kv_overrides = overrides
    assert params.kv_overrides == {"llama.context_length": 77}
    m = L.llama_model_load_from_file(llama_f32_path, params)
    assert L.llama_model_n_ctx_train(m) == 77
    L.llama_model_free(m)
    overrides[0].tag = 42
    with pytest.raises(ValueError, match="tag"):
        params.kv_overrides = overrides


def test_quantize_takes_the_ctypes_params_struct(llama_f32_path, tmp_path):
    params = L.llama_model_quantize_params()
    params.ftype = L.LLAMA_FTYPE_MOSTLY_Q8_0
    params.nthread = 1
    params.output_tensor_type = params.token_embedding_type = L.GGML_TYPE_COUNT
    params.quantize_output_tensor = True
    assert L.llama_model_quantize(llama_f32_path, tmp_path / "q8.gguf", ctypes.byref(params)) == 0
    params.dry_run = True
    with pytest.raises(NotImplementedError):
        L.llama_model_quantize(llama_f32_path, tmp_path / "q8b.gguf", params)


def test_log_get_returns_what_log_set_installed():
    def callback(level, text, data):
        pass

    try:
        L.llama_log_set(callback, "ud")
        out_cb, out_ud = [None], [None]
        assert L.llama_log_get(out_cb, out_ud) == (callback, "ud") and out_cb == [callback] and out_ud == ["ud"]
    finally:
        L.llama_log_set(None, None)
    assert L.llama_log_get() == (None, None)


# --- extended batches (llama_batch_ext) -------------------------------------------


def ext_batch(ctx, tokens: list[int], pos0: int = 0, seq_id: int = 0, outputs: tuple[int, ...] = (-1,)):
    batch = L.llama_batch_ext_init(ctx)
    for i, token in enumerate(tokens):
        assert L.llama_batch_ext_add_token(batch, seq_id, token) == i
        assert L.llama_batch_ext_set_pos(batch, i, pos0 + i)
    for i in outputs:
        assert L.llama_batch_ext_set_output_logits(batch, i % len(tokens), True)
    return batch


def test_process_gives_the_logits_of_batch_and_decode(model, vocab):
    prompt = tokenize(vocab, PROMPT)
    n = len(prompt)
    classic = new_context(model)
    batch = L.llama_batch_init(64, 0, 1)
    fill(batch, prompt, 0)
    batch.logits[n - 2] = 1
    assert L.llama_decode(classic, batch) == 0
    ext_ctx = new_context(model)
    ext = ext_batch(ext_ctx, prompt, outputs=(n - 2, n - 1))
    assert L.llama_process(ext_ctx, L.LLAMA_PROCESS_TYPE_DECODE, ext) == 0
    for i in (n - 2, n - 1, -1):
        np.testing.assert_array_equal(L.llama_get_logits_ith(ext_ctx, i), L.llama_get_logits_ith(classic, i))
    with pytest.raises(IndexError):
        L.llama_get_logits_ith(ext_ctx, 0)  # not an output
    # the next token continues the sequence, as with llama_decode
    token = int(np.argmax(L.llama_get_logits_ith(classic, -1)))
    fill(batch, [token], n)
    assert L.llama_decode(classic, batch) == 0
    L.llama_batch_ext_clear(ext)
    assert L.llama_batch_ext_add_token(ext, 0, token) == 0
    assert L.llama_batch_ext_set_pos(ext, 0, (ctypes.c_int32 * 1)(n))
    assert L.llama_batch_ext_set_output_embd(ext, 0, True)
    assert L.llama_process(ext_ctx, L.LLAMA_PROCESS_TYPE_DECODE, ext) == 0
    np.testing.assert_array_equal(L.llama_get_logits_ith(ext_ctx, 0), L.llama_get_logits_ith(classic, 0))
    L.llama_batch_ext_free(ext)
    L.llama_batch_free(batch)
    L.llama_free(classic)
    L.llama_free(ext_ctx)


def test_batch_ext_returns_c_error_codes(ctx, model):
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    batch = L.llama_batch_ext_init(ctx)
    assert L.llama_batch_ext_add_token(batch, 1, 5) == -3  # the context has one sequence
    assert L.llama_batch_ext_add(batch, -1) == -3
    assert L.llama_batch_ext_add_token(batch, 0, n_vocab) == -2  # the entry stays, empty, as in C
    assert L.llama_batch_ext_add_embd(batch, 0, np.zeros((1, 3), np.float32)) == -2  # not the input width
    assert L.llama_batch_ext_add_seq(batch, 0, 7) is False
    assert L.llama_batch_ext_add_seq(batch, 9, 0) is False
    assert L.llama_batch_ext_set_output_logits(batch, 9, True) is False
    assert L.llama_batch_ext_set_pos(batch, 9, 0) is False
    assert L.llama_batch_ext_set_pos(batch, 0, None) is False
    assert L.llama_batch_ext_set_embd_state(batch, 0, np.zeros(L.llama_model_n_embd(model), np.float32)) is False
    L.llama_batch_ext_clear(batch)
    for i in range(L.llama_n_batch(ctx)):
        assert L.llama_batch_ext_add_token(batch, 0, 1) == i
    assert L.llama_batch_ext_add_token(batch, 0, 1) == -1  # full
    L.llama_batch_ext_free(batch)


def test_invalid_extended_batches_raise_instead_of_aborting(model, vocab):
    ctx = new_context(model)
    other = new_context(model)
    prompt = tokenize(vocab, PROMPT)
    batch = L.llama_batch_ext_init(ctx)
    with pytest.raises(ValueError, match="empty"):
        L.llama_process(ctx, L.LLAMA_PROCESS_TYPE_DECODE, batch)
    assert L.llama_batch_ext_add_token(batch, 0, prompt[0]) == 0
    with pytest.raises(ValueError, match="no position"):
        L.llama_process(ctx, L.LLAMA_PROCESS_TYPE_DECODE, batch)
    with pytest.raises(ValueError, match="negative"):
        L.llama_batch_ext_set_pos(batch, 0, -1)
    assert L.llama_batch_ext_set_pos(batch, 0, 0)
    assert L.llama_batch_ext_add(batch, 0) == 1  # neither token nor embedding
    assert L.llama_batch_ext_set_pos(batch, 1, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="neither"):
        L.llama_process(ctx, L.LLAMA_PROCESS_TYPE_DECODE, batch)
    assert L.llama_batch_ext_set_embd_token(batch, 1, np.zeros(L.llama_model_n_embd(model), np.float32))
    with pytest.raises(ValueError, match="other content"):
        L.llama_process(ctx, L.LLAMA_PROCESS_TYPE_DECODE, batch)
    L.llama_batch_ext_clear(batch)
    assert L.llama_batch_ext_add_token(batch, 0, prompt[0]) == 0
    assert L.llama_batch_ext_set_pos(batch, 0, 0)
    with pytest.raises(ValueError, match="another context"):
        L.llama_process(other, L.LLAMA_PROCESS_TYPE_DECODE, batch)
    with pytest.raises(ValueError, match="type"):
        L.llama_process(ctx, 7, batch)
    assert L.llama_process(ctx, L.LLAMA_PROCESS_TYPE_DECODE, batch) == 0
    with pytest.raises(ValueError, match="rejected"):  # position 0 again: llama.cpp's own check
        L.llama_process(ctx, L.LLAMA_PROCESS_TYPE_DECODE, batch)
    with pytest.raises(TypeError):
        L.llama_process(ctx, L.LLAMA_PROCESS_TYPE_DECODE, None)
    L.llama_free(ctx)
    with pytest.raises(ValueError):
        L.llama_process(ctx, L.LLAMA_PROCESS_TYPE_DECODE, batch)
    L.llama_batch_ext_free(batch)
    for call in (lambda: L.llama_batch_ext_add_token(batch, 0, 1), lambda: L.llama_batch_ext_clear(batch),
                 lambda: L.llama_batch_ext_set_pos(batch, 0, 0), lambda: L.llama_batch_ext_free(batch)):
        with pytest.raises(ValueError, match="freed"):
            call()
    L.llama_free(other)


def test_embedding_entries_take_llama_embd_structs(model, vocab):
    """An input embedding row (here the token's own embedding, read back from a first decode) via llama_embd."""
    ctx = new_context(model)
    n_embd = L.llama_model_n_embd(model)
    rows = np.random.default_rng(0).standard_normal((2, n_embd)).astype(np.float32)
    batch = L.llama_batch_ext_init(ctx)
    for i in range(2):
        embd = L.llama_embd(rows[i].ctypes.data_as(ctypes.POINTER(ctypes.c_float)), 1, n_embd)
        assert L.llama_batch_ext_add_embd(batch, 0, embd) == i
        assert L.llama_batch_ext_set_pos(batch, i, i)
    assert L.llama_batch_ext_set_output_logits(batch, 1, True)
    assert L.llama_process(ctx, L.LLAMA_PROCESS_TYPE_DECODE, batch) == 0
    via_ext = L.llama_get_logits_ith(ctx, -1)
    classic = new_context(model)
    b = L.llama_batch_init(2, n_embd, 1)
    b.embd[:] = rows.reshape(-1)
    for i in range(2):
        b.pos[i], b.n_seq_id[i], b.seq_id[i][0], b.logits[i] = i, 1, 0, i == 1
    b.n_tokens = 2
    assert L.llama_decode(classic, b) == 0
    np.testing.assert_array_equal(via_ext, L.llama_get_logits_ith(classic, -1))
    L.llama_batch_ext_free(batch)
    L.llama_batch_free(b)
    L.llama_free(ctx)
    L.llama_free(classic)


# --- backend sampling (llama_set_sampler) ------------------------------------------


def greedy_chain():
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
    return chain


def test_backend_greedy_chain_samples_the_argmax(model, vocab):
    """The CPU backend runs samplers in the graph too: the sampled token is the argmax of the logits."""
    ctx = new_context(model)
    chain = greedy_chain()
    assert L.llama_set_sampler(ctx, 0, chain) is True
    prompt = tokenize(vocab, PROMPT)
    batch = L.llama_batch_init(64, 0, 1)
    fill(batch, prompt, 0)
    assert L.llama_decode(ctx, batch) == 0
    logits = L.llama_get_logits_ith(ctx, -1)
    token = L.llama_get_sampled_token_ith(ctx, -1)
    assert token == int(np.argmax(logits)) == L.llama_get_sampled_token_ith(ctx, len(prompt) - 1)
    # greedy leaves the full logits row and no candidate list (C: count 0, the ids are all tokens)
    np.testing.assert_array_equal(L.llama_get_sampled_logits_ith(ctx, -1), logits)
    assert L.llama_get_sampled_logits_count_ith(ctx, -1) == logits.size
    assert L.llama_get_sampled_probs_ith(ctx, -1) is None and L.llama_get_sampled_probs_count_ith(ctx, -1) == 0
    assert L.llama_get_sampled_candidates_count_ith(ctx, -1) == 0
    np.testing.assert_array_equal(L.llama_get_sampled_candidates_ith(ctx, -1), np.arange(logits.size))
    assert L.llama_sampler_sample(chain, ctx, -1) == token  # takes the backend's token, as in C
    with pytest.raises(IndexError):
        L.llama_get_sampled_token_ith(ctx, 0)  # no output there
    with pytest.raises(IndexError):
        L.llama_get_sampled_logits_ith(ctx, 5 * len(prompt))
    # llama.cpp samples one output per sequence: two are an invalid batch
    ext = ext_batch(ctx, [token, token], pos0=len(prompt), outputs=(0, 1))
    with pytest.raises(ValueError, match="at most 1 outputs per sequence"):
        L.llama_process(ctx, L.LLAMA_PROCESS_TYPE_DECODE, ext)
    L.llama_batch_ext_free(ext)
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_sampler_free(chain)  # llama_free detached it


def test_backend_top_k_leaves_candidates_for_the_cpu(model, vocab):
    ctx = new_context(model)
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(5))
    assert L.llama_set_sampler(ctx, 0, chain)
    prompt = tokenize(vocab, PROMPT)
    ext = ext_batch(ctx, prompt)
    assert L.llama_process(ctx, L.LLAMA_PROCESS_TYPE_DECODE, ext) == 0
    assert L.llama_get_sampled_token_ith(ctx, -1) == L.LLAMA_TOKEN_NULL
    ids = L.llama_get_sampled_candidates_ith(ctx, -1)
    logits = L.llama_get_sampled_logits_ith(ctx, -1)
    assert L.llama_get_sampled_candidates_count_ith(ctx, -1) == L.llama_get_sampled_logits_count_ith(ctx, -1) == 5
    assert ids.dtype == np.int32 and logits.dtype == np.float32 and len(ids) == len(logits) == 5
    # as in C, llama_get_logits_ith gives the sampled logits; the full row was never copied out
    np.testing.assert_array_equal(L.llama_get_logits_ith(ctx, -1), logits)
    with pytest.raises(ValueError, match="candidates"):
        L.llama_get_logits(ctx)
    reference = new_context(model)
    assert L.llama_decode(reference, L.llama_batch_get_one(prompt, len(prompt))) == 0
    full = L.llama_get_logits_ith(reference, -1)
    assert sorted(ids.tolist()) == sorted(np.argsort(-full)[:5].tolist())
    np.testing.assert_allclose(logits, full[ids], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="selected no token"):  # top-k ran in the graph; nothing picks one
        L.llama_sampler_sample(chain, ctx, -1)
    L.llama_free(reference)
    assert L.llama_set_sampler(ctx, 0, None)
    L.llama_batch_ext_free(ext)
    L.llama_free(ctx)
    L.llama_sampler_free(chain)


def test_context_without_backend_sampler_reports_nothing_sampled(ctx, vocab):
    batch = L.llama_batch_get_one(tokenize(vocab, PROMPT), len(tokenize(vocab, PROMPT)))
    assert L.llama_decode(ctx, batch) == 0
    assert L.llama_get_sampled_token_ith(ctx, -1) == L.LLAMA_TOKEN_NULL
    assert L.llama_get_sampled_probs_ith(ctx, -1) is None and L.llama_get_sampled_logits_ith(ctx, -1) is None
    assert L.llama_get_sampled_candidates_count_ith(ctx, -1) == 0


def test_attached_sampler_is_kept_alive_and_guarded(model, vocab):
    import gc

    ctx, other = new_context(model, n_seq_max=2), new_context(model)
    chain = greedy_chain()
    with pytest.raises(ValueError, match="sequence id"):
        L.llama_set_sampler(ctx, 2, chain)
    with pytest.raises(ValueError, match="chain"):
        L.llama_set_sampler(ctx, 0, L.llama_sampler_init_greedy())
    with pytest.raises(TypeError):
        L.llama_set_sampler(ctx, 0, "greedy")
    outer = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    inner = greedy_chain()
    L.llama_sampler_chain_add(outer, inner)
    with pytest.raises(ValueError, match="belongs to another chain"):
        L.llama_set_sampler(ctx, 0, inner)
    assert L.llama_set_sampler(ctx, 0, chain)
    assert L.llama_set_sampler(ctx, 0, chain)  # already there: nothing to do
    with pytest.raises(ValueError, match="attached"):
        L.llama_set_sampler(ctx, 1, chain)
    with pytest.raises(ValueError, match="attached"):
        L.llama_set_sampler(other, 0, chain)
    with pytest.raises(ValueError, match="attached"):
        L.llama_sampler_free(chain)
    with pytest.raises(ValueError, match="attached"):
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
    with pytest.raises(ValueError, match="attached"):
        L.llama_sampler_chain_remove(chain, 0)
    with pytest.raises(ValueError, match="attached"):
        L.llama_sampler_chain_add(outer, chain)
    del chain
    gc.collect()  # the context holds the chain
    prompt = tokenize(vocab, PROMPT)
    batch = L.llama_batch_get_one(prompt, len(prompt))
    assert L.llama_decode(ctx, batch) == 0
    assert L.llama_get_sampled_token_ith(ctx, -1) == int(np.argmax(L.llama_get_logits_ith(ctx, -1)))
    # detached: free to go, but llama.cpp sets a chain up for the backend once only
    again = greedy_chain()
    assert L.llama_set_sampler(other, 0, again)
    assert L.llama_set_sampler(other, 0, None)
    with pytest.raises(ValueError, match="clone"):
        L.llama_set_sampler(other, 0, again)
    clone = L.llama_sampler_clone(again)
    assert L.llama_set_sampler(other, 0, clone)
    taken = L.llama_sampler_chain_remove(again, 0)  # its greedy was set up too
    fresh = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(fresh, taken)
    with pytest.raises(ValueError, match="clone"):
        L.llama_set_sampler(ctx, 1, fresh)
    L.llama_sampler_free(again)
    L.llama_sampler_free(fresh)
    L.llama_free(other)
    L.llama_sampler_free(clone)
    L.llama_sampler_free(outer)
    L.llama_free(ctx)


def test_cpu_samplers_after_backend_ones_pick_from_its_candidates(model, vocab):
    """llama_sampler_sample continues on the CPU (mirostat has no backend part) from the graph's top-k."""
    ctx = new_context(model)
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(3))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_mirostat_v2(7, 5.0, 0.1))
    assert L.llama_set_sampler(ctx, 0, chain)
    prompt = tokenize(vocab, PROMPT)
    assert L.llama_decode(ctx, L.llama_batch_get_one(prompt, len(prompt))) == 0
    assert L.llama_get_sampled_token_ith(ctx, -1) == L.LLAMA_TOKEN_NULL
    candidates = L.llama_get_sampled_candidates_ith(ctx, -1).tolist()
    assert len(candidates) == 3
    assert L.llama_sampler_sample(chain, ctx, -1) in candidates
    L.llama_free(ctx)
    L.llama_sampler_free(chain)


# --- custom samplers (llama_sampler_init with a ctypes llama_sampler_i) ---

_PY_SAMPLER_NAME = ctypes.create_string_buffer(b"py-sampler")


def _py_sampler(apply, calls: dict, *, ctx=None, name=True, clone=None, copy_state=None):
    """A llama_sampler_i of ctypes callbacks that count their calls in `calls`."""
    def count(key):
        calls[key] = calls.get(key, 0) + 1

    def on_name(smpl):
        count("name")
        return ctypes.addressof(_PY_SAMPLER_NAME)

    def on_apply(smpl, cur_p):
        count("apply")
        apply(cur_p.contents)

    iface = L.llama_sampler_i()
    iface.name = L.llama_sampler_i_name(on_name) if name else L.llama_sampler_i_name(0)
    iface.accept = L.llama_sampler_i_accept(lambda smpl, token: (count("accept"), calls.setdefault("tokens", []).append(token)))
    iface.apply = L.llama_sampler_i_apply(on_apply)
    iface.reset = L.llama_sampler_i_reset(lambda smpl: count("reset"))
    iface.clone = L.llama_sampler_i_clone(clone) if clone else L.llama_sampler_i_clone(0)
    iface.free = L.llama_sampler_i_free(lambda smpl: count("free"))
    if copy_state:
        iface.copy_state = L.llama_sampler_i_copy_state(copy_state)
    return L.llama_sampler_init(iface, ctx)


def _argmax(arr) -> None:
    arr.selected = max(range(arr.size), key=lambda k: arr.data[k].logit)


def test_custom_sampler_apply_sets_selected_and_counts_callbacks():
    calls: dict = {}
    smpl = _py_sampler(_argmax, calls)
    assert L.llama_sampler_name(smpl) == b"py-sampler" and calls["name"] == 1
    data, arr = _candidates([0.5, 3.0, 1.0, 2.0])
    L.llama_sampler_apply(smpl, ctypes.byref(arr))
    assert arr.selected == 1 and calls["apply"] == 1
    L.llama_sampler_accept(smpl, 3)
    L.llama_sampler_reset(smpl)
    assert calls["accept"] == 1 and calls["tokens"] == [3] and calls["reset"] == 1
    assert "free" not in calls
    L.llama_sampler_free(smpl)
    assert calls["free"] == 1
    with pytest.raises(ValueError, match="freed"):
        L.llama_sampler_apply(smpl, arr)
    with pytest.raises(ValueError, match="freed"):
        L.llama_sampler_free(smpl)
    assert calls["free"] == 1


def test_custom_sampler_in_a_chain_on_a_real_decode(model, ctx, vocab):
    prompt = tokenize(vocab, PROMPT)
    assert L.llama_decode(ctx, L.llama_batch_get_one(prompt, len(prompt))) == 0
    logits = np.array(L.llama_get_logits_ith(ctx, -1)[: L.llama_vocab_n_tokens(vocab)], copy=True)
    best = int(np.argmax(logits))

    # a Python argmax picks the token greedy would
    calls: dict = {}
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, _py_sampler(_argmax, calls))
    assert L.llama_sampler_sample(chain, ctx, -1) == best
    assert calls["apply"] == 1 and calls["tokens"] == [best]  # the chain accepts what it picked

    # a Python sampler that bans the best token, before greedy: greedy picks the runner-up
    banned: dict = {}

    def ban(arr):
        for k in range(arr.size):
            if arr.data[k].id == best:
                arr.data[k].logit = float("-inf")

    chain2 = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain2, _py_sampler(ban, banned))
    L.llama_sampler_chain_add(chain2, L.llama_sampler_init_greedy())
    runner_up = int(np.argsort(logits)[-2])
    assert L.llama_sampler_sample(chain2, ctx, -1) == runner_up
    assert banned["apply"] == 1 and banned["tokens"] == [runner_up]
    assert L.llama_sampler_name(L.llama_sampler_chain_get(chain2, 0)) == b"py-sampler"
    L.llama_sampler_reset(chain2)
    assert banned["reset"] == 1

    # the chain keeps the ctypes struct and its callbacks alive; freeing it calls free once
    import gc
    gc.collect()
    assert L.llama_sampler_sample(chain2, ctx, -1) == runner_up
    L.llama_sampler_free(chain2)
    L.llama_sampler_free(chain)
    assert banned["free"] == 1 and calls["free"] == 1


def test_custom_sampler_callbacks_may_use_the_context(model, ctx, vocab):
    prompt = tokenize(vocab, PROMPT)
    assert L.llama_decode(ctx, L.llama_batch_get_one(prompt, len(prompt))) == 0
    seen = []

    def apply(arr):
        seen.append(L.llama_n_ctx(ctx))  # the context's lock is not held while callbacks run
        _argmax(arr)

    smpl = _py_sampler(apply, {})
    L.llama_sampler_sample(smpl, ctx, -1)
    assert seen == [L.llama_n_ctx(ctx)]


def test_custom_sampler_cannot_be_freed_by_its_own_callback():
    errors = []
    holder = []

    def apply(arr):
        try:
            L.llama_sampler_free(holder[0])
        except ValueError as e:
            errors.append(str(e))
        _argmax(arr)

    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    smpl = _py_sampler(apply, {})
    L.llama_sampler_chain_add(chain, smpl)
    holder.append(chain)
    _, arr = _candidates([1.0, 2.0])
    L.llama_sampler_apply(chain, arr)
    assert arr.selected == 1 and errors and "in use" in errors[0]
    L.llama_sampler_free(chain)


def test_custom_sampler_clone():
    # without ctx and clone callback, llama.cpp clones it as another sampler on the same iface
    calls: dict = {}
    smpl = _py_sampler(_argmax, calls)
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, smpl)
    copy = L.llama_sampler_clone(chain)
    L.llama_sampler_free(chain)
    assert calls["free"] == 1
    _, arr = _candidates([1.0, 5.0, 2.0])
    L.llama_sampler_apply(copy, arr)
    assert arr.selected == 1 and calls["apply"] == 1
    L.llama_sampler_free(copy)
    assert calls["free"] == 2

    # with ctx but no clone callback llama.cpp aborts: a ValueError here
    keep = ctypes.c_int(7)
    with_ctx = _py_sampler(_argmax, {}, ctx=ctypes.cast(ctypes.pointer(keep), ctypes.c_void_p))
    with pytest.raises(ValueError, match="no clone callback"):
        L.llama_sampler_clone(with_ctx)
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, with_ctx)
    with pytest.raises(ValueError, match="no clone callback"):
        L.llama_sampler_clone(chain)
    with pytest.raises(ValueError, match="copy_state"):
        L.llama_sampler_copy(with_ctx, with_ctx)
    L.llama_sampler_free(chain)

    # a clone callback returns a new sampler's address; the clone takes it over
    cloned: dict = {}

    def clone(smpl_p):
        ctx_value = ctypes.cast(smpl_p, ctypes.POINTER(L.llama_sampler)).contents.ctx
        return _py_sampler(_argmax, cloned, ctx=ctx_value).address

    orig = _py_sampler(_argmax, {}, ctx=ctypes.cast(ctypes.pointer(keep), ctypes.c_void_p), clone=clone)
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, orig)
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
    copy = L.llama_sampler_clone(chain)
    import gc
    gc.collect()
    assert L.llama_sampler_chain_n(copy) == 2 and "free" not in cloned
    L.llama_sampler_apply(copy, arr)
    assert cloned["apply"] == 1
    L.llama_sampler_free(copy)
    assert cloned["free"] == 1
    single = L.llama_sampler_clone(orig)
    assert single.is_custom and L.llama_sampler_name(single) == b"py-sampler"

    # a clone callback returning NULL (or raising) is a ValueError, and nothing is freed twice
    bad = _py_sampler(_argmax, {}, ctx=1, clone=lambda smpl_p: None)
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
    L.llama_sampler_chain_add(chain, bad)
    with pytest.raises(ValueError, match="clone callback"):
        L.llama_sampler_clone(chain)
    with pytest.raises(ValueError, match="clone callback"):
        L.llama_sampler_clone(bad)
    L.llama_sampler_free(chain)  # llama.cpp never reads a custom sampler's ctx itself


def test_custom_sampler_rejects_bad_input():
    with pytest.raises(TypeError):
        L.llama_sampler_init(object(), None)
    with pytest.raises(ValueError, match="fields"):
        L.llama_sampler_init(L.llama_token_data(), None)

    class short_i(ctypes.Structure):
        _fields_ = L.llama_sampler_i._fields_[:6]

    with pytest.raises(ValueError, match="fields"):
        L.llama_sampler_init(short_i(), None)

    class swapped_i(ctypes.Structure):
        _fields_ = [L.llama_sampler_i._fields_[1], L.llama_sampler_i._fields_[0], *L.llama_sampler_i._fields_[2:]]

    with pytest.raises(ValueError, match="fields"):
        L.llama_sampler_init(swapped_i(), None)

    class int_i(ctypes.Structure):
        _fields_ = [(name, ctypes.c_int64) for name, _ in L.llama_sampler_i._fields_]

    with pytest.raises(TypeError, match="function pointer"):
        L.llama_sampler_init(int_i(), None)

    iface = L.llama_sampler_i()
    with pytest.raises(ValueError, match="apply"):
        L.llama_sampler_init(iface, None)
    iface.apply = L.llama_sampler_i_apply(lambda s, c: None)
    iface.backend_reset = L.llama_sampler_i_backend_reset(lambda s: None)
    with pytest.raises(ValueError, match="backend"):
        L.llama_sampler_init(ctypes.pointer(iface), None)
    iface.backend_reset = L.llama_sampler_i_backend_reset(0)
    with pytest.raises(TypeError, match="ctx"):
        L.llama_sampler_init(iface, "ctx")
    smpl = L.llama_sampler_init(ctypes.byref(iface), None)
    assert L.llama_sampler_name(smpl) == b"(null)"  # no name callback: llama.cpp would call NULL
    L.llama_sampler_free(smpl)
    with pytest.raises(ValueError, match="freed"):
        L.llama_sampler_name(smpl)
