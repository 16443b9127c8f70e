"""SamplerChain: the chain options, grammars, and batched sampling."""

from __future__ import annotations

import numpy as np
import pytest

from allama import _native
from allama.errors import GrammarError

from ..native_context import make_context


def params(**fields) -> _native.SamplerParams:
    p = _native.SamplerParams()
    for key, value in fields.items():
        setattr(p, key, value)
    return p


@pytest.fixture()
def decoded(llama_model, llama_vocab):
    """A context holding two prompts' last-token logits at batch rows 0 and 1."""
    ctx = make_context(llama_model)
    batch = _native.Batch(64)
    a = llama_vocab.tokenize("The quick brown fox")
    b = llama_vocab.tokenize("Once upon a time")
    batch.add_tokens(a, 0, 0, True)
    batch.add_tokens(b, 0, 1, True)
    ctx.decode(batch)
    return ctx, [len(a) - 1, len(a) + len(b) - 1]


def test_default_chain_follows_llama_cpp_python(llama_model):
    chain = _native.SamplerChain(llama_model)
    assert chain.names == ["top-k", "?typical", "top-p", "min-p", "temp", "dist"]


def test_optional_samplers_join_the_chain(llama_model):
    chain = _native.SamplerChain(llama_model, params(
        logit_bias={5: 1.0}, repeat_penalty=1.1, dry_multiplier=0.8, dry_penalty_last_n=64,
        grammar='root ::= "a"', xtc_probability=0.5, top_n_sigma=1.5))
    assert chain.names == ["logit-bias", "penalties", "dry", "grammar", "top-k", "?typical", "top-p",
                           "min-p", "xtc", "top-n-sigma", "temp", "dist"]
    assert _native.SamplerChain(llama_model, params(mirostat_mode=2)).names == ["mirostat-v2"]
    assert _native.SamplerChain(llama_model, params(temperature=0.0)).names == ["greedy"]


def test_greedy_picks_the_argmax(llama_model, decoded):
    ctx, rows = decoded
    chain = _native.SamplerChain(llama_model, params(temperature=0.0))
    assert chain.sample(ctx, rows[0]) == int(np.argmax(ctx.logits(rows[0])))


def test_same_seed_same_samples_and_different_seed_differs(llama_model, decoded):
    ctx, rows = decoded

    def draws(seed):
        chain = _native.SamplerChain(llama_model, params(seed=seed, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0))
        return [chain.sample(ctx, rows[0]) for _ in range(20)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_logit_bias_bans_and_forces_tokens(llama_model, decoded):
    ctx, rows = decoded
    best = int(np.argmax(ctx.logits(rows[0])))
    banned = _native.SamplerChain(llama_model, params(temperature=0.0, logit_bias={best: float("-inf")}))
    assert banned.sample(ctx, rows[0]) != best
    forced = _native.SamplerChain(llama_model, params(temperature=0.0, logit_bias={1234: 1000.0}))
    assert forced.sample(ctx, rows[0]) == 1234


def test_repeat_penalty_discourages_accepted_tokens(llama_model, decoded):
    ctx, rows = decoded
    best = int(np.argmax(ctx.logits(rows[0])))
    chain = _native.SamplerChain(llama_model, params(temperature=0.0, repeat_penalty=1e6, penalty_last_n=8))
    chain.accept(best)
    assert chain.sample(ctx, rows[0]) != best


def grammar_generate(llama_model, llama_vocab, grammar: str, prompt: str, steps: int = 16, **extra) -> bytes:
    ctx = make_context(llama_model)
    chain = _native.SamplerChain(llama_model, params(grammar=grammar, temperature=0.0, **extra))
    tokens = llama_vocab.tokenize(prompt)
    batch = _native.Batch(64)
    batch.add_tokens(tokens, 0, 0, True)
    ctx.decode(batch)
    out = []
    pos = len(tokens)
    for _ in range(steps):
        token = chain.sample(ctx, -1)
        if llama_vocab.is_eog(token):
            break
        out.append(token)
        batch.clear()
        batch.add(token, pos, 0, True)
        pos += 1
        ctx.decode(batch)
    return llama_vocab.detokenize(out)


def test_grammar_constrains_generation(llama_model, llama_vocab):
    text = grammar_generate(llama_model, llama_vocab, 'root ::= ("yes" | "no") "!"', "Answer:")
    assert text in (b"yes!", b"no!")


def test_json_like_grammar_produces_matching_text(llama_model, llama_vocab):
    grammar = r'root ::= "{\"n\": " [0-9] [0-9]? "}"'
    text = grammar_generate(llama_model, llama_vocab, grammar, "JSON:")
    import re

    assert re.fullmatch(rb'\{"n": [0-9][0-9]?\}', text), text


def test_lazy_grammar_waits_for_its_trigger(llama_model, llama_vocab):
    chain = _native.SamplerChain(llama_model, params(
        grammar='root ::= "<tool>" [a-z]+', grammar_lazy=True, grammar_trigger_patterns=["<tool>"], temperature=0.0))
    assert "grammar" in chain.names


def test_grammar_that_does_not_parse_raises_grammar_error(llama_model):
    with pytest.raises(GrammarError, match="does not parse"):
        _native.SamplerChain(llama_model, params(grammar='root ::= "unterminated'))
    with pytest.raises(ValueError):
        _native.SamplerChain(llama_model, params(grammar='root ::= undefined_rule'))


def test_accepting_a_token_the_grammar_forbids_raises(llama_model, llama_vocab):
    chain = _native.SamplerChain(llama_model, params(grammar='root ::= "yes"', temperature=0.0))
    with pytest.raises(GrammarError):
        chain.accept(llama_vocab.tokenize("no", add_special=False)[-1])


def test_clone_continues_identically(llama_model, decoded):
    ctx, rows = decoded
    chain = _native.SamplerChain(llama_model, params(seed=3, temperature=1.0))
    chain.sample(ctx, rows[0])
    twin = chain.clone()
    assert [chain.sample(ctx, rows[0]) for _ in range(10)] == [twin.sample(ctx, rows[0]) for _ in range(10)]


def test_reset_restarts_the_random_stream(llama_model, decoded):
    ctx, rows = decoded
    chain = _native.SamplerChain(llama_model, params(seed=11, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0))
    first = [chain.sample(ctx, rows[0]) for _ in range(10)]
    chain.reset()
    assert [chain.sample(ctx, rows[0]) for _ in range(10)] == first


def test_sample_logits_takes_a_modified_row(llama_model, decoded):
    ctx, rows = decoded
    logits = ctx.logits(rows[0])
    logits[42] = 1e9
    chain = _native.SamplerChain(llama_model, params(temperature=0.0))
    assert chain.sample_logits(logits) == 42
    with pytest.raises(ValueError, match="n_vocab"):
        chain.sample_logits(logits[:10])


def test_sample_batch_matches_one_by_one(llama_model, decoded):
    ctx, rows = decoded
    make = lambda seed: _native.SamplerChain(llama_model, params(seed=seed, temperature=0.9))  # noqa: E731
    batch_chains = [make(1), make(2), make(3)]
    solo_chains = [make(1), make(2), make(3)]
    jobs = [(batch_chains[0], rows[0]), (batch_chains[1], rows[1]), (batch_chains[2], rows[0])]
    for _ in range(5):
        got = _native.sample_batch(ctx, jobs)
        expected = [solo_chains[0].sample(ctx, rows[0]), solo_chains[1].sample(ctx, rows[1]),
                    solo_chains[2].sample(ctx, rows[0])]
        assert got == expected


def test_many_rows_sampled_on_the_decode_threads_match_one_by_one(llama_model, llama_vocab, decoded):
    """32 rows go to the context's 2 threads (a chain per row, so no two threads share one);
    a failing chain among them still fails only its own row."""
    ctx, rows = decoded
    make = lambda seed: _native.SamplerChain(llama_model, params(seed=seed, temperature=0.9))  # noqa: E731
    batch_chains = [make(seed) for seed in range(32)]
    solo_chains = [make(seed) for seed in range(32)]
    eos = llama_vocab.eos
    stuck = _native.SamplerChain(llama_model, params(grammar='root ::= "yes"', logit_bias={eos: float("-inf")}))
    stuck.accept(next(t for t in range(llama_vocab.n_tokens) if llama_vocab.token_to_piece(t) == b"yes"))
    batch_chains[20] = stuck
    for _ in range(4):
        got = _native.sample_batch(ctx, [(chain, rows[k % 2]) for k, chain in enumerate(batch_chains)])
        assert isinstance(got[20], GrammarError)
        expected = [chain.sample(ctx, rows[k % 2]) for k, chain in enumerate(solo_chains) if k != 20]
        assert got[:20] + got[21:] == expected
        solo_chains[20].sample(ctx, rows[0])  # kept in step with its twin's random stream


def test_a_chain_given_twice_samples_its_rows_in_order(llama_model, decoded):
    ctx, rows = decoded
    shared = _native.SamplerChain(llama_model, params(seed=5, temperature=0.9))
    solo = _native.SamplerChain(llama_model, params(seed=5, temperature=0.9))
    got = _native.sample_batch(ctx, [(shared, rows[k % 2]) for k in range(24)])
    assert got == [solo.sample(ctx, rows[k % 2]) for k in range(24)]


def test_sample_batch_reports_a_failing_chain_without_stopping_the_others(llama_model, llama_vocab, decoded):
    ctx, rows = decoded
    eos = llama_vocab.eos
    done = _native.SamplerChain(llama_model, params(grammar='root ::= "yes"', temperature=0.0,
                                                     logit_bias={eos: float("-inf")}))
    yes = next(t for t in range(llama_vocab.n_tokens) if llama_vocab.token_to_piece(t) == b"yes")
    done.accept(yes)  # the grammar is complete: only end-of-generation may follow, and it is banned
    healthy = _native.SamplerChain(llama_model, params(temperature=0.0))
    results = _native.sample_batch(ctx, [(done, rows[0]), (healthy, rows[1])])
    assert isinstance(results[0], GrammarError)
    assert results[1] == int(np.argmax(ctx.logits(rows[1])))


@pytest.mark.parametrize("field, value, message", [
    ("repeat_penalty", 0.0, "repeat_penalty"),
    ("mirostat_mode", 3, "mirostat_mode"),
    ("logit_bias", {99999: 1.0}, "logit_bias token id 99999"),
    ("penalty_last_n", -5, "penalty_last_n"),
    ("xtc_probability", 2.0, "xtc_probability"),
    ("temperature", float("nan"), "temperature"),
    ("grammar_trigger_tokens", [-1], "trigger token"),
])
def test_bad_sampling_options_raise_value_error(llama_model, field, value, message):
    with pytest.raises(ValueError, match=message):
        _native.SamplerChain(llama_model, params(**{field: value}))


def test_sampling_a_row_without_output_raises(llama_model, decoded):
    ctx, _ = decoded
    chain = _native.SamplerChain(llama_model)
    with pytest.raises(IndexError, match="no output"):
        chain.sample(ctx, 0)
    with pytest.raises(IndexError):
        _native.sample_batch(ctx, [(chain, 0)])


def test_accepting_a_token_the_grammar_forbids_raises_instead_of_aborting(llama_f32_path):
    """llama.cpp aborts the process when an unfinished grammar is given EOS; the chain asks
    the grammar first (in a subprocess, so an abort cannot take the test run down)."""
    from .isolated import run_isolated

    outcome = run_isolated(f"""
        from allama import _native
        model = _native.Model.load({str(llama_f32_path)!r})
        params = _native.SamplerParams()
        params.grammar = 'root ::= "yes" | "no"'
        chain = _native.SamplerChain(model, params)
        try:
            chain.accept(_native.Vocab(model).eos)
        except Exception as exc:
            print(type(exc).__name__, exc)
            raise
    """)
    assert outcome.is_a("GrammarError"), outcome


def _chain(llama_model, *, top_k: int, seed: int, through_llama_cpp: bool) -> _native.SamplerChain:
    params = _native.SamplerParams()
    params.temperature, params.top_k, params.seed = 0.8, top_k, seed
    if through_llama_cpp:  # a sampler before top-k: llama.cpp's own top-k sees the whole vocabulary
        params.logit_bias = {5: 0.0}
    return _native.SamplerChain(llama_model, params)


@pytest.mark.parametrize("kind", ["normal", "many -inf", "few finite", "ties", "all negative", "packed"])
def test_leading_top_k_shortcut_samples_what_llama_cpp_top_k_samples(llama_model, kind):
    # A chain that starts with top-k gets only the k best candidates (select_top_k); it must
    # pick exactly what the chain picks when llama.cpp's top-k sorts the whole vocabulary.
    rng = np.random.default_rng(7)
    n_vocab = _native.Vocab(llama_model).n_tokens
    for trial in range(60):
        logits = (rng.standard_normal(n_vocab) * 3).astype(np.float32)
        if kind == "many -inf":
            logits[rng.integers(0, n_vocab, n_vocab // 2)] = -np.inf
        elif kind == "few finite":
            logits[:] = -np.inf
            logits[rng.integers(0, n_vocab, 5)] = rng.standard_normal(5).astype(np.float32)
        elif kind == "ties":
            logits = np.round(logits).astype(np.float32)  # many equal logits across the cut
        elif kind == "all negative":
            logits -= 100.0
        elif kind == "packed":  # distinct logits, all within the selection's first bound (1/128)
            logits = np.float32(1.0) + rng.permutation(n_vocab).astype(np.float32) * np.finfo(np.float32).eps
        top_k = int(rng.integers(1, 300))
        fast = _chain(llama_model, top_k=top_k, seed=trial, through_llama_cpp=False)
        full = _chain(llama_model, top_k=top_k, seed=trial, through_llama_cpp=True)
        picks = [(fast.sample_logits(logits), full.sample_logits(logits)) for _ in range(4)]
        if kind == "ties":
            # llama.cpp orders equal logits arbitrarily: the same seed may then pick another of
            # them, but never a token outside the tied top
            cut = np.sort(logits)[::-1][top_k - 1]
            assert all(logits[a] >= cut for a, _ in picks)
        else:
            assert [a for a, _ in picks] == [b for _, b in picks], (trial, top_k)


def test_leading_top_k_shortcut_never_picks_a_nan_logit(llama_model):
    rng = np.random.default_rng(3)
    n_vocab = _native.Vocab(llama_model).n_tokens
    logits = rng.standard_normal(n_vocab).astype(np.float32)
    logits[rng.integers(0, n_vocab, n_vocab // 3)] = np.nan
    chain = _chain(llama_model, top_k=40, seed=1, through_llama_cpp=False)
    for _ in range(50):
        assert not np.isnan(logits[chain.sample_logits(logits)])


def test_greedy_shortcut_picks_the_first_largest_logit_as_llama_cpp_greedy(llama_model):
    rng = np.random.default_rng(11)
    n_vocab = _native.Vocab(llama_model).n_tokens
    params = _native.SamplerParams()
    params.temperature = 0.0
    greedy = _native.SamplerChain(llama_model, params)
    for trial in range(40):
        logits = np.round(rng.standard_normal(n_vocab) * 2).astype(np.float32)  # many ties at the top
        assert greedy.sample_logits(logits) == int(np.argmax(logits))  # the first of equal maxima
        with_nan = logits.copy()
        with_nan[rng.integers(1, n_vocab, 100)] = np.nan
        assert greedy.sample_logits(with_nan) == int(np.argmax(np.nan_to_num(with_nan, nan=-np.inf)))
    logits[0] = np.nan  # llama.cpp's scan compares against index 0 first: nothing beats a NaN there
    assert greedy.sample_logits(logits) == 0
