"""Context: decoding against an independent oracle, batching, state, memory, GIL."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from allama import _native
from allama.errors import ClosedError, DecodeAbortedError, KVCacheFullError
from allama.testing.model_builder import LORA_TARGETS, LlamaConfig, build_llama, build_lora

from ..native_context import make_context
from ..tiny_models import TINY_LLAMA
from ..oracle.llama_forward import LlamaWeights, forward

PROMPTS = [
    "The quick brown fox jumps over the lazy dog",
    "Once upon a time, in a land far away,",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
]

# Exact settings: F32 KV cache and no flash attention (which computes in F16 on the CPU).
EXACT = {"type_k": 0, "type_v": 0, "flash_attn_type": 0}


def prefill(ctx, tokens, seq_id=0, pos0=0, all_logits=False):
    batch = _native.Batch(len(tokens))
    for i, t in enumerate(tokens):
        batch.add(t, pos0 + i, seq_id, all_logits or i == len(tokens) - 1)
    ctx.decode(batch)
    return batch


@pytest.fixture(scope="module")
def oracle_weights(llama_f32_path):
    return LlamaWeights.from_gguf(llama_f32_path)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_logits_match_the_numpy_oracle(llama_model, llama_vocab, oracle_weights, prompt):
    tokens = llama_vocab.tokenize(prompt)
    ctx = make_context(llama_model, **EXACT)
    prefill(ctx, tokens, all_logits=True)
    got = ctx.logits_rows(list(range(len(tokens))))
    expected = forward(oracle_weights, tokens)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)


def test_default_settings_stay_close_to_the_oracle(llama_model, llama_vocab, oracle_weights):
    """With llama.cpp's defaults (F16 KV cache, flash attention auto) the error is larger but small."""
    tokens = llama_vocab.tokenize(PROMPTS[0])
    ctx = make_context(llama_model)
    prefill(ctx, tokens)
    err = np.abs(ctx.logits(-1) - forward(oracle_weights, tokens)[-1]).max()
    assert err < 0.05


def test_incremental_decode_matches_the_oracle(llama_model, llama_vocab, oracle_weights):
    tokens = llama_vocab.tokenize(PROMPTS[1])
    ctx = make_context(llama_model, **EXACT)
    prefill(ctx, tokens[:4])
    for pos in range(4, len(tokens)):
        prefill(ctx, [tokens[pos]], pos0=pos)
    np.testing.assert_allclose(ctx.logits(-1), forward(oracle_weights, tokens)[-1], atol=1e-3, rtol=0)


def test_greedy_generation_matches_the_oracle_and_is_deterministic(llama_model, llama_vocab, oracle_weights):
    prompt = llama_vocab.tokenize(PROMPTS[0])

    def generate():
        ctx = make_context(llama_model, **EXACT)
        prefill(ctx, prompt)
        out = []
        for step in range(12):
            token = int(np.argmax(ctx.logits(-1)))
            out.append(token)
            prefill(ctx, [token], pos0=len(prompt) + step)
        return out

    first, second = generate(), generate()
    assert first == second
    seq = list(prompt)
    for token in first:
        logits = forward(oracle_weights, seq)[-1]
        top2 = np.sort(logits)[-2:]
        if top2[1] - top2[0] > 1e-2:  # a clear margin: the choice is well defined
            assert int(np.argmax(logits)) == token
        seq.append(token)


def test_two_sequences_in_one_batch_match_each_alone(llama_model, llama_vocab):
    a = llama_vocab.tokenize(PROMPTS[0])
    b = llama_vocab.tokenize(PROMPTS[1])

    def alone(tokens):
        ctx = make_context(llama_model, **EXACT)
        prefill(ctx, tokens)
        first = ctx.logits(-1)
        nxt = int(np.argmax(first))
        prefill(ctx, [nxt], pos0=len(tokens))
        return first, ctx.logits(-1)

    ctx = make_context(llama_model, **EXACT)
    batch = _native.Batch(len(a) + len(b), 1)
    batch.add_tokens(a, 0, 0, True)
    batch.add_tokens(b, 0, 1, True)
    ctx.decode(batch)
    together_a, together_b = ctx.logits(len(a) - 1), ctx.logits(-1)
    # one generation step of both sequences in one batch
    step = _native.Batch(2, 1)
    step.add(int(np.argmax(together_a)), len(a), 0, True)
    step.add(int(np.argmax(together_b)), len(b), 1, True)
    ctx.decode(step)
    alone_a, alone_b = alone(a), alone(b)
    np.testing.assert_allclose(together_a, alone_a[0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(together_b, alone_b[0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ctx.logits(0), alone_a[1], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ctx.logits(1), alone_b[1], atol=1e-4, rtol=0)


def test_sequence_state_restored_elsewhere_gives_identical_next_logits(llama_model, llama_vocab):
    tokens = llama_vocab.tokenize(PROMPTS[2])
    ctx = make_context(llama_model, **EXACT)
    prefill(ctx, tokens[:-1], seq_id=0)
    saved = ctx.seq_state_get(0)
    assert len(saved) > 0
    prefill(ctx, [tokens[-1]], seq_id=0, pos0=len(tokens) - 1)
    expected = ctx.logits(-1)

    other = make_context(llama_model, **EXACT)
    assert other.seq_state_set(saved, 2) == len(saved)
    assert other.seq_pos_max(2) == len(tokens) - 2
    prefill(other, [tokens[-1]], seq_id=2, pos0=len(tokens) - 1)
    np.testing.assert_array_equal(other.logits(-1), expected)


def test_whole_state_round_trip(llama_model, llama_vocab):
    tokens = llama_vocab.tokenize(PROMPTS[0])
    ctx = make_context(llama_model, **EXACT)
    prefill(ctx, tokens)
    state = ctx.state_get()
    before = ctx.logits(-1)
    ctx.memory_clear()
    assert ctx.seq_pos_max(0) == -1
    assert ctx.state_set(state) == len(state)
    assert ctx.seq_pos_max(0) == len(tokens) - 1
    np.testing.assert_array_equal(ctx.logits(-1), before)


def test_seq_cp_shares_a_prefix_without_recomputing(llama_model, llama_vocab):
    tokens = llama_vocab.tokenize(PROMPTS[1])
    ctx = make_context(llama_model, **EXACT)
    prefill(ctx, tokens[:-1], seq_id=0)
    ctx.seq_cp(0, 3)
    assert ctx.seq_pos_max(3) == len(tokens) - 2
    prefill(ctx, [tokens[-1]], seq_id=3, pos0=len(tokens) - 1)
    via_copy = ctx.logits(-1)
    fresh = make_context(llama_model, **EXACT)
    prefill(fresh, tokens)
    np.testing.assert_allclose(via_copy, fresh.logits(-1), atol=1e-4, rtol=0)


def test_seq_rm_and_keep(llama_model, llama_vocab):
    tokens = llama_vocab.tokenize(PROMPTS[0])
    ctx = make_context(llama_model)
    prefill(ctx, tokens, seq_id=0)
    prefill(ctx, tokens, seq_id=1)
    assert ctx.seq_rm(0, 5, -1)
    assert ctx.seq_pos_max(0) == 4
    assert ctx.seq_pos_min(0) == 0
    ctx.seq_keep(1)
    assert ctx.seq_pos_max(0) == -1
    assert ctx.seq_pos_max(1) == len(tokens) - 1
    assert ctx.can_shift
    ctx.seq_add(1, 0, -1, 10)
    assert ctx.seq_pos_max(1) == len(tokens) - 1 + 10
    ctx.seq_div(1, 0, -1, 2)
    assert ctx.seq_pos_max(1) == (len(tokens) - 1 + 10) // 2


def test_perf_counters_count_prompt_and_generated_tokens(llama_model, llama_vocab):
    ctx = make_context(llama_model)
    tokens = llama_vocab.tokenize(PROMPTS[0])
    # llama.cpp books a decode's tokens when it next synchronizes (reading logits does).
    prefill(ctx, tokens)
    ctx.logits(-1)
    prefill(ctx, [5], pos0=len(tokens))
    ctx.logits(-1)
    perf = ctx.perf()
    assert perf["n_p_eval"] == len(tokens)
    assert perf["n_eval"] == 1
    ctx.perf_reset()
    assert ctx.perf()["n_p_eval"] <= 1  # llama.cpp reports zero as 1


def test_perf_reset_right_after_a_decode_also_zeroes_that_decode(llama_model, llama_vocab):
    ctx = make_context(llama_model)
    prefill(ctx, llama_vocab.tokenize(PROMPTS[0]))  # not synchronized: nothing has read its logits
    ctx.perf_reset()
    assert ctx.perf()["n_p_eval"] <= 1  # llama.cpp reports zero as 1


def test_abort_stops_a_decode_and_the_next_one_runs(llama_model, llama_vocab):
    ctx = make_context(llama_model)
    tokens = llama_vocab.tokenize(PROMPTS[0])
    ctx.abort()
    with pytest.raises(DecodeAbortedError):
        prefill(ctx, tokens)
    ctx.memory_clear()
    prefill(ctx, tokens)
    assert ctx.logits(-1).shape == (32000,)


def test_no_free_kv_slot_raises_kv_cache_full(llama_model):
    ctx = make_context(llama_model, n_ctx=256, n_batch=256, n_seq_max=2)
    n_cells = ctx.n_ctx
    first = _native.Batch(n_cells)
    first.add_tokens([100] * (n_cells - 8), 0, 0)
    ctx.decode(first)
    second = _native.Batch(64)
    second.add_tokens([100] * 64, 0, 1)
    with pytest.raises(KVCacheFullError, match="KV cache"):
        ctx.decode(second)
    # the context stays usable
    ctx.seq_rm(0)
    ctx.decode(second)


def test_closed_context_raises(llama_model):
    ctx = make_context(llama_model)
    ctx.close()
    assert ctx.closed
    with pytest.raises(ClosedError):
        ctx.logits(-1)


@pytest.fixture(scope="module")
def medium_model(models_dir):
    config = LlamaConfig(n_embd=256, n_ff=1024, n_layer=4, n_head=8, n_head_kv=4)
    return _native.Model.load(str(build_llama(models_dir / "medium.gguf", config)[0]))


@contextmanager
def spinning_thread() -> Iterator[list[int]]:
    """A Python thread counting as fast as it can while the body runs, with a switch interval so
    long that a GIL holder is never made to let go: the count says whether the body left the
    GIL free."""
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    thread = threading.Thread(target=spin)
    thread.start()
    try:
        yield counter
    finally:
        stop.set()
        sys.setswitchinterval(old)
        thread.join()


def test_decode_releases_the_gil(medium_model):
    """A Python thread keeps running while a long decode is in flight."""
    ctx = make_context(medium_model, n_ctx=1024, n_batch=512, n_seq_max=1, n_threads=1)
    batch = _native.Batch(512)
    batch.add_tokens(list(range(100, 612)), 0, 0)
    ctx.decode(batch)  # warm up
    ctx.memory_clear()
    with spinning_thread() as counter:
        before = counter[0]
        ctx.decode(batch)
        during = counter[0] - before
    assert during > 1000


def test_embeddings_of_bert_are_pooled_per_sequence(bert_path):
    model = _native.Model.load(str(bert_path))
    vocab = _native.Vocab(model)
    a = vocab.tokenize("hello world")
    b = vocab.tokenize("a completely different sentence here")

    def embed(groups):
        ctx = make_context(model, embeddings=True, n_seq_max=4, **EXACT)
        batch = _native.Batch(64)
        for seq, tokens in enumerate(groups):
            batch.add_tokens(tokens, 0, seq, True)
        ctx.decode(batch)
        assert ctx.pooling_type == 1
        return [ctx.embeddings_seq(seq) for seq in range(len(groups))]

    together = embed([a, b])
    assert together[0].shape == (64,)
    np.testing.assert_allclose(together[0], embed([a])[0], atol=1e-5)
    np.testing.assert_allclose(together[1], embed([b])[0], atol=1e-5)
    assert not np.allclose(together[0], together[1])


def test_token_embeddings_with_pooling_none(bert_path):
    model = _native.Model.load(str(bert_path))
    tokens = _native.Vocab(model).tokenize("hello world")
    ctx = make_context(model, embeddings=True, pooling_type=0)
    batch = _native.Batch(16)
    for i, t in enumerate(tokens):
        batch.add(t, i, 0, True)
    ctx.decode(batch)
    rows = np.stack([ctx.embeddings(i) for i in range(len(tokens))])
    assert rows.shape == (len(tokens), 64)
    with pytest.raises(ValueError, match="pooling type none"):
        ctx.embeddings_seq(0)


def test_lora_adapter_applies_w_plus_scaled_ba(tmp_path, llama_model, llama_vocab, oracle_weights):
    rank, alpha, scale = 4, 8.0, 0.5
    adapter_path = build_lora(tmp_path / "lora.gguf", TINY_LLAMA, rank=rank, alpha=alpha)
    adapter = llama_model.load_lora(str(adapter_path))
    assert adapter.metadata["adapter.type"] == "lora"
    tokens = llama_vocab.tokenize(PROMPTS[0])
    ctx = make_context(llama_model, **EXACT)
    ctx.set_lora_adapters([(adapter, scale)])
    prefill(ctx, tokens)
    with_lora = ctx.logits(-1)

    import gguf

    lora = {t.name: np.asarray(t.data, dtype=np.float64) for t in gguf.GGUFReader(adapter_path).tensors}
    merged = dataclasses.replace(oracle_weights, tensors=dict(oracle_weights.tensors))
    for i in range(TINY_LLAMA.n_layer):
        for name in LORA_TARGETS:
            key = f"blk.{i}.{name}.weight"
            delta = lora[key + ".lora_b"] @ lora[key + ".lora_a"]
            merged.tensors[key] = merged.tensors[key] + scale * alpha / rank * delta
    np.testing.assert_allclose(with_lora, forward(merged, tokens)[-1], atol=1e-3, rtol=0)

    ctx.set_lora_adapters([])
    ctx.memory_clear()
    prefill(ctx, tokens)
    np.testing.assert_allclose(ctx.logits(-1), forward(oracle_weights, tokens)[-1], atol=1e-3, rtol=0)


def test_a_token_in_two_sequences_is_decoded_once_for_both(llama_model, llama_vocab):
    """A shared prefix added with seq_ids=[0, 1] serves both sequences' continuations."""
    prefix = llama_vocab.tokenize(PROMPTS[0])
    ctx = make_context(llama_model, **EXACT)
    batch = _native.Batch(len(prefix), 2)
    for i, t in enumerate(prefix):
        batch.add(t, i, [0, 1], False)
    ctx.decode(batch)
    assert ctx.seq_pos_max(0) == ctx.seq_pos_max(1) == len(prefix) - 1
    step = _native.Batch(2)
    step.add(500, len(prefix), 0, True)
    step.add(600, len(prefix), 1, True)
    ctx.decode(step)
    for row, nxt in ((0, 500), (1, 600)):
        fresh = make_context(llama_model, **EXACT)
        prefill(fresh, prefix + [nxt])
        np.testing.assert_allclose(ctx.logits(row), fresh.logits(-1), atol=1e-4, rtol=0)


def test_input_embeddings_decode_like_their_tokens(llama_model, llama_vocab, oracle_weights):
    tokens = llama_vocab.tokenize(PROMPTS[1])
    rows = oracle_weights.tensors["token_embd.weight"][tokens].astype(np.float32)
    ctx = make_context(llama_model, **EXACT)
    batch = _native.Batch(len(tokens), 1, llama_model.n_embd)
    batch.add_embeddings(rows, 0, 0, True)
    ctx.decode(batch)
    np.testing.assert_allclose(ctx.logits(-1), forward(oracle_weights, tokens)[-1], atol=1e-3, rtol=0)


def test_f16_weights_stay_close_to_the_oracle(llama_f16_path, llama_vocab):
    model = _native.Model.load(str(llama_f16_path))
    weights = LlamaWeights.from_gguf(llama_f16_path)  # the F16 values, widened exactly
    tokens = llama_vocab.tokenize(PROMPTS[0])
    ctx = make_context(model, **EXACT)
    prefill(ctx, tokens)
    expected = forward(weights, tokens)[-1]
    err = np.abs(ctx.logits(-1) - expected).max()
    assert err < 0.05 * np.abs(expected).max()
    assert int(np.argmax(ctx.logits(-1))) == int(np.argmax(expected))


def test_set_threads_and_embeddings_switch(llama_model, llama_vocab):
    ctx = make_context(llama_model)
    ctx.set_threads(1, 1)
    assert (ctx.n_threads, ctx.n_threads_batch) == (1, 1)
    tokens = llama_vocab.tokenize(PROMPTS[0])
    ctx.set_embeddings(True)
    prefill(ctx, tokens)
    hidden = ctx.embeddings(-1)  # a causal model's default pooling is none: per-token states
    assert hidden.shape == (llama_model.n_embd,) and np.isfinite(hidden).all()
    assert ctx.logits(-1).shape == (32000,)  # logits come along with the embeddings


def test_encode_runs_an_encoder_batch(bert_path):
    model = _native.Model.load(str(bert_path))
    tokens = _native.Vocab(model).tokenize("hello world")
    ctx = make_context(model, embeddings=True, **EXACT)
    batch = _native.Batch(16)
    batch.add_tokens(tokens, 0, 0, True)
    ctx.encode(batch)
    encoded = ctx.embeddings_seq(0)
    ctx.decode(batch)
    np.testing.assert_allclose(encoded, ctx.embeddings_seq(0), atol=1e-6)


def _readers(ctx: _native.Context, model: _native.Model, rows: list[int]):
    """Every call that reads a decode's outputs, each as a function of no arguments."""
    chain = _native.SamplerChain(model)
    return {
        "sample_batch": lambda: _native.sample_batch(ctx, [(_native.SamplerChain(model), r) for r in rows]),
        "SamplerChain.sample": lambda: chain.sample(ctx, rows[0]),
        "Sampler.sample (low level)": lambda: _native.Sampler.greedy().sample(ctx, rows[0]),
        "logits": lambda: ctx.logits(rows[0]),
        "logits_rows": lambda: ctx.logits_rows(rows),
        "perf": lambda: ctx.perf(),
    }


@pytest.mark.parametrize("reader", ["sample_batch", "SamplerChain.sample", "Sampler.sample (low level)", "logits",
                                    "logits_rows", "perf"])
def test_reading_outputs_waits_for_the_decode_with_the_gil_released(llama_model, llama_vocab, reader):
    """On a GPU, llama_decode returns before the outputs exist and their first read waits for
    the compute: that wait must leave the GIL to the event loop. The test hook makes the next
    read wait as such a decode would."""
    ctx = make_context(llama_model)
    batch = _native.Batch(16)
    for pos, token in enumerate(llama_vocab.tokenize("Once upon a time")):
        batch.add(token, pos, 0, True)
    ctx.decode(batch)
    read = _readers(ctx, llama_model, [batch.n_tokens - 1, batch.n_tokens - 2])[reader]
    ctx.inject_output_wait(0.3)
    with spinning_thread() as counter:
        before, t0 = counter[0], time.perf_counter()
        read()
        during, waited = counter[0] - before, time.perf_counter() - t0
    assert waited >= 0.3  # the read did wait
    assert during > 1000  # ... and Python ran meanwhile
    t0 = time.perf_counter()
    read()
    assert time.perf_counter() - t0 < 0.3  # the hook held for one wait only


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
def test_inject_output_wait_refuses_a_bad_duration(llama_model, seconds):
    ctx = make_context(llama_model)
    with pytest.raises(ValueError, match="seconds"):
        ctx.inject_output_wait(seconds)
