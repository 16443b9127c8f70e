"""Sampler: one llama_sampler for allama.llama_cpp, with chain ownership that cannot double free."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from allama import _native
from allama.errors import GrammarError

from ..native_context import make_context
from .isolated import run_isolated


@pytest.fixture()
def decoded(llama_model, llama_vocab):
    """A context whose last decode produced one output row (the prompt's last token)."""
    ctx = make_context(llama_model)
    batch = _native.Batch(64)
    prompt = llama_vocab.tokenize("The quick brown fox")
    batch.add_tokens(prompt, 0, 0, True)
    ctx.decode(batch)
    return ctx, len(prompt) - 1


def test_greedy_sample_picks_the_largest_logit(decoded):
    ctx, last = decoded
    smpl = _native.Sampler.greedy()
    assert smpl.sample(ctx, last) == int(np.argmax(ctx.logits(last)))
    assert smpl.sample(ctx, -1) == int(np.argmax(ctx.logits(-1)))


def test_chain_runs_its_samplers_in_order(decoded):
    ctx, _ = decoded
    chain = _native.Sampler.chain()
    for s in (_native.Sampler.top_k(1), _native.Sampler.dist(7)):
        chain.add(s)
    assert chain.n == 2
    assert [chain.get(i).name for i in range(chain.n)] == ["top-k", "dist"]
    assert chain.sample(ctx, -1) == int(np.argmax(ctx.logits(-1)))


def test_a_sampler_added_to_a_chain_cannot_be_freed_on_its_own():
    chain = _native.Sampler.chain()
    greedy = _native.Sampler.greedy()
    chain.add(greedy)
    assert greedy.in_chain
    with pytest.raises(ValueError, match="belongs to a chain"):
        greedy.free()
    with pytest.raises(ValueError, match="belongs to a chain"):
        chain.get(0).free()


def test_adding_a_sampler_twice_raises():
    first, second = _native.Sampler.chain(), _native.Sampler.chain()
    greedy = _native.Sampler.greedy()
    first.add(greedy)
    with pytest.raises(ValueError, match="already added"):
        first.add(greedy)
    with pytest.raises(ValueError, match="already added"):
        second.add(greedy)


def test_chains_refuse_cycles():
    outer, inner = _native.Sampler.chain(), _native.Sampler.chain()
    with pytest.raises(ValueError, match="itself"):
        outer.add(outer)
    outer.add(inner)
    with pytest.raises(ValueError, match="inside it"):
        inner.add(outer)


def test_freeing_a_chain_frees_its_members_handles():
    chain = _native.Sampler.chain()
    greedy = _native.Sampler.greedy()
    chain.add(greedy)
    borrowed = chain.get(0)
    chain.free()
    for handle in (chain, greedy, borrowed):
        assert handle.freed
        with pytest.raises(ValueError, match="freed"):
            handle.name
    with pytest.raises(ValueError, match="freed"):
        chain.free()


def test_removed_sampler_is_owned_by_the_caller_again():
    chain = _native.Sampler.chain()
    chain.add(_native.Sampler.top_k(5))
    chain.add(_native.Sampler.greedy())
    removed = chain.remove(0)
    assert chain.n == 1 and removed.name == "top-k" and not removed.in_chain
    chain.free()
    assert removed.name == "top-k"
    removed.free()
    assert removed.freed


def test_chain_index_out_of_range_raises_index_error():
    chain = _native.Sampler.chain()
    chain.add(_native.Sampler.greedy())
    assert chain.get(-1) == chain
    for i in (1, -2):
        with pytest.raises(IndexError):
            chain.get(i)
    with pytest.raises(IndexError):
        chain.remove(1)


def test_chain_operations_on_a_single_sampler_raise():
    greedy = _native.Sampler.greedy()
    for call in (lambda: greedy.add(_native.Sampler.greedy()), lambda: greedy.n, greedy.perf):
        with pytest.raises(ValueError, match="chain"):
            call()


def test_clone_copies_a_chain_with_independent_members(decoded):
    ctx, _ = decoded
    chain = _native.Sampler.chain()
    chain.add(_native.Sampler.top_k(3))
    chain.add(_native.Sampler.dist(42))
    copy = chain.clone()
    assert copy.n == 2 and copy.get(1).name == "dist"
    chain.free()
    assert copy.sample(ctx, -1) in np.argsort(ctx.logits(-1))[-3:]
    with pytest.raises(ValueError, match="belongs to a chain"):
        copy.get(0).free()


def test_samplers_for_another_vocabulary_are_refused(decoded, llama_vocab):
    ctx, _ = decoded
    n_vocab = llama_vocab.n_tokens
    chain = _native.Sampler.chain()
    chain.add(_native.Sampler.penalties(n_vocab + 1, 64, 1.1, 0.0, 0.0))
    with pytest.raises(ValueError, match="vocabulary"):
        chain.add(_native.Sampler.logit_bias(n_vocab, [(1, 1.0)]))
    chain.add(_native.Sampler.greedy())
    with pytest.raises(ValueError, match="vocabulary"):
        chain.sample(ctx, -1)


def test_constructor_arguments_are_validated(llama_vocab):
    n_vocab = llama_vocab.n_tokens
    bad = [
        lambda: _native.Sampler.logit_bias(n_vocab, [(n_vocab, 1.0)]),
        lambda: _native.Sampler.logit_bias(n_vocab, [(-1, 1.0)]),
        lambda: _native.Sampler.penalties(n_vocab, 64, 0.0, 0.0, 0.0),
        lambda: _native.Sampler.penalties(0, 64, 1.1, 0.0, 0.0),
        lambda: _native.Sampler.top_p(float("nan"), 1),
        lambda: _native.Sampler.top_p(0.9, -1),
        lambda: _native.Sampler.mirostat(n_vocab, 1, 5.0, 0.1, 0),
        lambda: _native.Sampler.dry(llama_vocab, -1.0, 1.75, 2, 64, []),
    ]
    for make in bad:
        with pytest.raises(ValueError):
            make()


def test_accept_refuses_tokens_outside_the_vocabulary(llama_vocab):
    n_vocab = llama_vocab.n_tokens
    penalties = _native.Sampler.penalties(n_vocab, 64, 1.1, 0.0, 0.0)
    penalties.accept(n_vocab - 1)
    for token in (n_vocab, -1):
        with pytest.raises(ValueError, match="out of range"):
            penalties.accept(token)


def test_unparsable_grammar_raises_grammar_error(llama_vocab):
    with pytest.raises(GrammarError, match="parse"):
        _native.Sampler.grammar(llama_vocab, 'root ::= ("a"', "root")
    with pytest.raises(GrammarError, match="no rule named"):
        _native.Sampler.grammar(llama_vocab, 'root ::= "a"', "start")


def test_grammar_refuses_a_token_it_does_not_allow(llama_vocab):
    (yes,) = llama_vocab.tokenize("yes", False)
    grammar = _native.Sampler.grammar(llama_vocab, f'root ::= "{llama_vocab.token_to_piece(yes).decode()}"', "root")
    not_allowed = llama_vocab.tokenize("maybe", False)[0]
    with pytest.raises(GrammarError, match="does not allow"):
        grammar.accept(not_allowed)
    grammar.accept(yes)  # the refusal left the grammar usable
    grammar.accept(llama_vocab.eos)  # and now complete, it takes end-of-generation


def test_grammar_constrains_sampling(decoded, llama_vocab):
    ctx, _ = decoded
    chain = _native.Sampler.chain()
    chain.add(_native.Sampler.grammar(llama_vocab, 'root ::= [0-9]+', "root"))
    chain.add(_native.Sampler.greedy())
    token = chain.sample(ctx, -1)
    assert llama_vocab.token_to_piece(token).strip().isdigit()


def test_end_of_generation_into_an_unfinished_grammar_raises(llama_f32_path: Path):
    # llama.cpp aborts the process when a grammar accepts end-of-generation too early.
    out = run_isolated(f"""
from allama import _native
vocab = _native.Vocab(_native.Model.load({str(llama_f32_path)!r}))
grammar = _native.Sampler.grammar(vocab, 'root ::= "yes" "no"', "root")
grammar.accept(vocab.eos)
""")
    assert out.is_a("GrammarError"), (out.type_name, out.message)


def test_a_chain_that_selects_no_token_raises(llama_f32_path: Path):
    # llama_sampler_sample asserts (aborts) when no sampler in the chain picks a token.
    out = run_isolated(f"""
from allama import _native
model = _native.Model.load({str(llama_f32_path)!r})
vocab = _native.Vocab(model)
p = _native.ContextParams(); p.n_ctx = 128; p.n_batch = 32; p.n_ubatch = 32; p.n_threads = 1
ctx = _native.Context(model, p)
batch = _native.Batch(32)
batch.add_tokens(vocab.tokenize("hello"), 0, 0, True)
ctx.decode(batch)
chain = _native.Sampler.chain()
chain.add(_native.Sampler.top_k(5))
chain.sample(ctx, -1)
""")
    assert out.is_a("ValueError") and "selected no token" in out.message, (out.type_name, out.message)


def test_sample_checks_the_output_row(decoded):
    ctx, last = decoded
    greedy = _native.Sampler.greedy()
    for idx in (last - 1, last + 1, -2):
        with pytest.raises(IndexError):
            greedy.sample(ctx, idx)


def test_sampler_perf_counts_samples_of_a_chain(decoded):
    ctx, _ = decoded
    chain = _native.Sampler.chain(no_perf=False)
    chain.add(_native.Sampler.greedy())
    chain.sample(ctx, -1)
    chain.sample(ctx, -1)
    _, n_sample = chain.perf()
    assert n_sample == 2
    chain.perf_reset()
    assert chain.perf()[1] == 0
